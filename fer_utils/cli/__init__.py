"""The package's command-line programs, the product a researcher or user runs: ``fer-train`` (a paper's
recipe on a real dataset, one process or torchrun; :mod:`.fer_train`, its engine :mod:`.train_loop` and
its checkpoints :mod:`.checkpoint`). They share the package's one training step
(:func:`fer_utils.train.train_step`), one dataset path (:func:`fer_utils.data.sources.open_dataset`) and
one output contract (:func:`fer_utils.models.logits_of`).
"""
