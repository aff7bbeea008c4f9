"""videogen.toy: the CPU demos on synthetic moving shapes, and what only they use.

Nothing in the library (``videogen.core``, ``videogen.data``, ``videogen.lamd``, ``videogen.cmd``,
``videogen.lvdm``) imports this package; it may import anything below ``videogen.cli``.  Importing it is
cheap: each submodule loads torch-heavy code only when its demo runs.

- ``lamd``, ``cmd``, ``lvdm``, ``lvdm_t2v``: one demo each, ``run_demo(out_dir, seed=0, fast=False,
  config=None) -> metrics`` with its config dataclass (``LaMDDemoConfig``, ``CMDDemoConfig``,
  ``LVDMDemoConfig``, ``LVDMT2VDemoConfig``; ``fast()`` / ``brief()`` give smaller runs);
- ``tour``: the three-model tour behind ``make demo`` (``run_tour``, ``demo_runners``);
- ``common``: what the demos share (in-memory dataset, quiet trainer, tiling);
- ``motion``, ``scoring``: motion, caption and long-motion accuracy against the synthetic set's rules;
- ``text``: ``word_level_clip``, a random word-level CLIP over the synthetic captions' vocabulary.
"""
