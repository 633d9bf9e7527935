"""The components of the edgetrain Flower app (see pyproject.toml beside this file)."""
from edgetrain.federated.deploy import client, server  # noqa: F401
