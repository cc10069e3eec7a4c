"""A LlamaIndex transformation that counts its calls (a class-level counter), importable by child processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from llama_index.core.schema import BaseNode, TextNode, TransformComponent


class CountingUppercase(TransformComponent):
    """Upper-cases every node's text, counting the nodes it transformed."""

    nodes_seen: ClassVar[int] = 0

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        type(self).nodes_seen += len(nodes)
        return [TextNode(text=node.get_content().upper(), id_=node.node_id + "-upper") for node in nodes]
