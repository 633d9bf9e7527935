"""The components of the edgetrain Flower app (see pyproject.toml beside this file)."""
from edgetrain.federated import deploy

server = deploy.server
client = deploy.client
