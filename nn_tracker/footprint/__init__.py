"""The footprint model and its data.

The NN-CI formulas, the reference catalogue and its tables, everyday equivalents, time-resolved
grid intensity and scheduling.
"""
