"""Process-level services every stage uses: device and precision, data-parallel ranks, seeding,
timing and progress logs."""
