"""``python -m shoal.distributed ...``: one rank of a distributed run (started by torch.distributed.run)."""

import sys

from shoal.distributed.worker import main

sys.exit(main())
