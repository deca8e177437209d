"""The demo's traffic generator as its own process: `python -m vm_mesh.demo.traffic ADDR RATE`."""

import asyncio
import sys

from vm_mesh.demo.runner import generate_traffic

if __name__ == "__main__":
    asyncio.run(generate_traffic(sys.argv[1], float(sys.argv[2]), None))
