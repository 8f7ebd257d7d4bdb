"""How jobs run: CPU kernel pins, the local job server, Slurm profile checks."""
