"""A local Direct Line service emulator (Direct Line 3.0 and 1.1 on one port).

Run it with `python3 -m emulator`, or in-process with
`emulator.server.start_in_thread()`. See docs/emulator.md.
"""

__version__ = "1.0.0"
