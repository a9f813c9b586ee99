#!/usr/bin/env bash
# The PDF paper (WeasyPrint) and the DOCX's chart images (CairoSVG) need Pango and Cairo, which Debian and
# Ubuntu desktops and these machines have. Installs them when missing; needs root or sudo.
set -euo pipefail
ldconfig -p | grep -q "libpango-1.0.so.0" && ldconfig -p | grep -q "libpangoft2-1.0.so.0" \
  && ldconfig -p | grep -q "libcairo.so.2" && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 libcairo2 >/dev/null
