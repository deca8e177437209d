"""Allow `python -m vm_mesh` as an alias of the `vmesh` command."""

import sys

from vm_mesh.cli import main

sys.exit(main())
