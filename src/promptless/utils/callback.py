"""``pl.utils.callback``: where DSPy users import ``BaseCallback`` from (defined in ``promptless.callbacks``)."""

from ..callbacks import ACTIVE_CALL_ID, BaseCallback, with_callbacks

__all__ = ["ACTIVE_CALL_ID", "BaseCallback", "with_callbacks"]
