# Sourced: where the Python tools that clash with each other (SAM, checkov) live, each in a
# virtual environment of its own, made once per machine and shared by every clone.
tools=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/github-audit-sekoia/tools}

tool_venv() { # name, pip requirement; complete once its marker is written
  local dir="$tools/$1"
  [ -f "$dir/.complete" ] && return
  rm -rf "$dir"
  mkdir -p "$tools"
  python3 -m venv "$dir" && "$dir/bin/pip" install --quiet "$2" && touch "$dir/.complete"
}
