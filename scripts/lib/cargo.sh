# Sourced by the scripts: where cargo puts what it builds.
#
# cargo's own answer (`cargo metadata`), so CARGO_TARGET_DIR, a `build.target-dir` in a
# .cargo/config.toml and the default ./target all work; a script that assumed ./target
# built elsewhere and then found no binary.

# Prints the directory of release builds (by default ./target/ + release).
release_dir() {
  local dir
  dir=$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || return 1
  printf '%s/release\n' "$dir"
}
