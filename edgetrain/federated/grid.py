"""An in-process Flower ``Grid``: the ServerApp's messages are handled by ClientApps in this
process, one after the other (no Ray, no network). Used by the tests and by
``edgetrain federate --backend inprocess``; the strategy, the ClientApp and the messages are
Flower's own, only the transport is a function call. A ClientApp that raises returns an error
reply, which the strategy counts as a failure (as the simulation runtime does).
"""
from __future__ import annotations

import copy
import itertools
from typing import Dict, Iterable, List, Optional

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

CLIENT_APP_EXCEPTION = 0  # error code of a ClientApp that raised


class InProcessGrid(Grid):
    """``num_nodes`` nodes, node ``i`` with node config
    ``{"partition-id": i, "num-partitions": num_nodes}``, all running ``client_app``."""

    def __init__(self, client_app, num_nodes: int, run_id: int = 1):
        self._app = client_app
        self._run = None
        # messages created in this process carry the run and the sender (the server)
        TaskIdentity.task_id, TaskIdentity.run_id = 1, run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        self._run_id = run_id
        self._ids = itertools.count(1)
        self._replies: Dict[str, Message] = {}
        self._contexts = {
            SUPERLINK_NODE_ID + 1 + i: Context(run_id=run_id, node_id=SUPERLINK_NODE_ID + 1 + i,
                           node_config={"partition-id": i, "num-partitions": num_nodes},
                           state=RecordDict(), run_config={})
            for i in range(num_nodes)}

    # -- Grid -----------------------------------------------------------------------------
    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        if self._run is None:  # Flower's legacy workflows (SecAgg+) read the run's id
            from flwr.supercore.run import Run

            self._run = Run.create_empty(self._run_id)
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: Optional[float] = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids: List[str] = []
        for msg in messages:
            mid = f"m{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = mid
            self._replies[mid] = self._handle(msg)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: Optional[float] = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    # -- one node ---------------------------------------------------------------------------
    def _handle(self, msg: Message) -> Message:
        ctx = self._contexts[msg.metadata.dst_node_id]
        msg = copy.deepcopy(msg)  # as if sent over the wire: mods may change what they got
        try:
            reply = self._app(msg, ctx)
        except Exception as e:  # the client failed: an error reply, as the runtimes send
            reply = Message(Error(CLIENT_APP_EXCEPTION, f"{type(e).__name__}: {e}"),
                            reply_to=msg)
        # the sender is the node (as a SuperNode stamps it; SecAgg+ tells nodes apart by it)
        reply.metadata.__dict__["_src_node_id"] = msg.metadata.dst_node_id
        return reply
