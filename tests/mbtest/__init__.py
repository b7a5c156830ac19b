"""mbtest: the one package of test support; tests import from it and from no other test module.

Import a name from its topic module, the same way everywhere (``tests/`` is on pytest's
``pythonpath``)::

    from mbtest.repo import REPO, run_tool
    from mbtest.mixers import check_standard, make_batch, seeded

Modules, by topic:

* ``repo``: the repository root, method and model configs (``method_of``, ``model_of``),
  scripts imported by path (``load_script``) and tools run as a user would (``run_tool``).
* ``training``: digits runs through tools/train.py (``train_on_digits``, ``digits_config``,
  trained then resumed: ``train_then_resume``, ``train_and_resume``).
* ``mixers``: the mixers' shared property checks (the ``MixOutput`` contract, mask identity,
  reproducibility, Beta KS test, dtypes, CPU == CUDA), tiny models, ``requires_cuda``.
* ``learnable``: the learnable and label-mixing methods' checks (staged step vs mmengine's,
  gradient routing, EMA encoder) and ``TINY_VIT``.
* ``sweep``: sweep files, ``tools/sweep.py`` runs and their state; ``FAKE_TRAIN`` names the
  stand-in trainer script ``tests/sweep/fake_train.py`` (run as a process, never imported).
* ``leaderboard``: hand-made result.json and analysis files, the reference benchmark, where
  the test PostgreSQL server is.
* ``analysis``: the analysis tools called in-process and a model whose Grad-CAM is known.
* ``datasets``: miniature copies of every benchmark dataset in its official layout.

pytest fixtures stay in the ``conftest.py`` files; where their body is shared code they call
this package.
"""
