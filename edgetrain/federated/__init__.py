"""``edgetrain.federated``: federated training with Flower (``pip install edgetrain[federated]``).

Every device trains one model on its own data with a :class:`~edgetrain.TrainSession` (or, on a
phone without Python, with ``et_train``); Flower's strategies aggregate the updates.

- :mod:`.partition` — IID, Dirichlet(α) and k-classes-per-client splits (numpy only);
- :mod:`.task` — the training program, one client's local round, the central evaluator
  (edgetrain only);
- :mod:`.apps` — the Flower ``ClientApp`` and ``ServerApp`` (FedAvg, FedProx, FedAdam);
- :mod:`.device` — a client whose local training runs in ``et_train`` over adb (or locally /
  under qemu);
- :mod:`.grid` — an in-process Flower ``Grid``; :mod:`.simulation` — runs a federation with
  Flower's simulation runtime (Ray) or in process;
- :mod:`.deploy` and the app project ``flwr_app/`` — the same apps under Flower's deployment
  runtime (``flwr run`` to a SuperLink with SuperNodes).

Only :mod:`.partition` and :mod:`.task` import without Flower; ``flwr`` is imported by the
other modules, so ``import edgetrain`` never needs it.
"""
from .partition import parse_partition, partition  # noqa: F401
