#!/bin/sh
# Makes sure the Debian packages herald builds and tests with are there:
# installs the missing ones when run as root, else prints the exact command.
#   tools/deps.sh build|test|bench|fuzz|valgrind
set -e
need="pkg-config liblua5.4-dev libuv1-dev lua-cjson-dev libedit-dev
  libsodium-dev libssl-dev libsqlite3-dev libwslay-dev libhttp-parser-dev
  libsystemd-dev"
case "$1" in
  test) need="$need libcmocka-dev python3 python3-cryptography tmux tzdata
    man-db groff chromium dbus-daemon dbus-bin dbus-x11 xvfb dunst
    libnotify-bin" ;;
  bench) need="$need redis-server gnuplot-nox" ;;
  fuzz) need="$need clang-14 libclang-rt-14-dev tzdata" ;;
  valgrind) need="$need libcmocka-dev python3 tmux tzdata valgrind" ;;
esac
missing=""
for pkg in $need; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "herald: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "herald: missing Debian packages; please run:" >&2
  echo "  sudo apt-get install$missing" >&2
  exit 1
fi
