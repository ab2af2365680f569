"""A training hook whose own code fails at the second step (a KeyError in the plugin)."""

from cvkit.engine.trainer import Hook
from cvkit.registry import HOOKS


@HOOKS.register()
class BrokenHook(Hook):
    def after_step(self, trainer, losses):
        if trainer.step == 2:
            return losses["loss_that_does_not_exist"]
        return None
