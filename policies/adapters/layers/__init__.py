"""Fewer layers (arXiv 2606.20246), two readings:

* ``last_k``: freeze everything but the last k transformer blocks of each chosen group (the seed's
  summary, "freeze all except the last few");
* ``clp``: the paper's CKA-guided layer pruning: drop the most redundant blocks of each group after
  one calibration pass, then fine-tune the smaller model normally.

``common.layer_lists`` says which blocks each group has.
"""
