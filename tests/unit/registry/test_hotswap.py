"""The one hot-swap holder of the controller's policy and the twin service's twin."""

from __future__ import annotations

from slicetwin.registry.hotswap import HotSwap, Rejected
from slicetwin.registry.store import MemoryRegistry


class Numbers(HotSwap[int]):
    """A model is the integer in the blob; odd ones fail their check."""

    kind = "policy"

    def build(self, blob, version, record_metrics):
        n = int(blob)
        if n % 2:
            raise Rejected("odd", f"{n} is odd")
        return n

    def version_of(self, model, blob):
        return f"n{model}"


def test_a_refused_model_leaves_the_old_one_serving_and_is_counted():
    h, swapped, refused = Numbers(), [], []
    h.on_swap.append(swapped.append)
    h.on_reject.append(refused.append)
    assert h.load(b"2", None, "file:a").version == "n2"
    try:
        h.load(b"3", "v3", "file:b")
    except Rejected as e:
        assert e.reason == "odd"
    else:
        raise AssertionError("an odd model must be refused")
    assert h.current.model == 2 and h.version == "n2" and h.last_error == "3 is odd"
    assert (h.swaps, h.rejected, refused) == (0, 1, ["odd"])
    h.load(b"4", "v4", "file:c")
    assert (h.version, h.swaps, [s.version for s in swapped]) == ("v4", 1, ["n2", "v4"])


def test_registry_loads_serve_what_the_promotion_record_names():
    reg = MemoryRegistry("k" * 32)
    h = Numbers()
    assert h.load_from_registry(reg) is False and h.rejected == 1  # nothing promoted yet
    reg.publish("policy", b"6", version="six", promote=True)
    assert h.load_from_registry(reg, "six") and h.version == "six" and h.current.model == 6
    reg.publish("policy", b"7", version="seven", promote=True)
    assert h.load_from_registry(reg, "seven") is False and h.version == "six"
