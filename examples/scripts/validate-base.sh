#!/bin/sh
# In-VM validation: the customizations of the base image are present.
set -eu
test -f /etc/kiln/hardening
test -f /etc/motd.d/kiln
grep -q 'PasswordAuthentication no' /etc/ssh/sshd_config.d/50-kiln-hardening.conf
echo "validation passed"
