#!/usr/bin/env bash
# Installs what tests/test_slurm.py needs (Debian/Ubuntu): SLURM's daemons and clients, and munge.
# The test starts and stops its own one-node cluster; this script starts nothing. Idempotent: it only
# calls apt-get when a program is missing. Run as root (or with sudo available).
set -euo pipefail

needed=(munged slurmctld slurmd sbatch squeue scontrol scancel sinfo srun unshare mount)
missing=()
for prog in "${needed[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null || missing+=("$prog")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm-setup: all present (${needed[*]})"
    exit 0
fi
echo "slurm-setup: installing for: ${missing[*]}"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# If the packages' scripts start system munged/slurm services (only with an init system), they do not
# disturb the test: its cluster has its own munge socket, config and ports.
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q slurm-wlm munge util-linux mount
