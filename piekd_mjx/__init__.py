"""piekd_mjx: ensembles of SAC agents with Periodic Intra-Ensemble Knowledge
Distillation (PIEKD), trained in one jitted program on MuJoCo XLA."""

__version__ = '0.1.0'
