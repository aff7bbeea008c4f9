"""Suite-wide test settings.

- One torch thread per process: the suite runs on 2-core machines (CI, developers), often with
  pytest-xdist workers side by side; oversubscribed threads made tiny CPU loops 10-30x slower.
- Offline: nothing in the tests may download (weights are built tiny and saved to tmp dirs).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
