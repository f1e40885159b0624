"""{{name}}: sets the header `x-tag` to its `value` setting and drops messages without a
payload."""

from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

# Module state: componentize-py makes a new Transform object for every call.
VALUE = ["{{name}}"]


class Transform(exports.Transform):
    def init(self, config: List[Tuple[str, str]]) -> None:
        for key, value in config:
            if key != "value":
                raise Err(f"unknown setting `{key}` (expected one of: `value`)")
            VALUE[0] = value

    def process(self, msg: types.Message) -> types.Verdict:
        if msg.payload() is None:
            return types.Verdict_Drop()
        msg.set_header("x-tag", VALUE[0].encode())
        return types.Verdict_Forward()
