"""Behaviour groups: k-means on annual income x spending score, a second axis beside the segment.

* :mod:`~mallscore.groups.contract`: the groups card as a checked contract, and its rules in SQL
  (which rows get a group, the nearest centre); standard library only, on the scoring path;
* :mod:`~mallscore.groups.assign`: the groups champion loaded for scoring (onnxruntime), the
  nightly job's and ``rescore``'s hooks;
* :mod:`~mallscore.groups.fit`: choosing k by silhouette with its spread, fitting, naming;
* :mod:`~mallscore.groups.job`: ``mallscore groups train``: read, fit, export (parity-gated), card,
  register, promote, report;
* :mod:`~mallscore.groups.report`: the offline HTML page.

A customer gets a group only when their spending score is observed (never a guess for new
customers); the group is stored by its name, generated from the centres and kept across retrains
whose centres barely move.
"""

SPEC = "groups"
KIND = "groups"
