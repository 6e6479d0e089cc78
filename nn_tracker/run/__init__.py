"""Running a tracked job.

Phases and units, endings (SIGTERM, uncaught exceptions, exit), energy per request, and
``nn-tracker run`` with its reaper.
"""
