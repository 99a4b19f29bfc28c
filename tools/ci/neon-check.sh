#!/usr/bin/env bash
# Runs the ARM NEON (AdvSimd + Dp sdot) kernel paths on an x86-64 Debian machine, under qemu user-mode
# emulation, and checks them bit for bit against the scalar reference (tests/BitMoe.KernelCheck).
#
#   1. installs qemu-user-static with apt-get (when qemu-aarch64-static is missing; needs root);
#   2. downloads the arm64 C and C++ runtime libraries (libc6, libstdc++6, libgcc-s1) from the
#      Debian archive, with apt-get on a private package list (the machine's own apt state is not touched),
#      and unpacks them into a sysroot;
#   3. publishes BitMoe.KernelCheck for linux-arm64, self-contained, Release;
#   4. runs it with `qemu-aarch64-static -cpu max -L SYSROOT ... --require neon`, so a CPU model without
#      NEON + sdot is an error, never a silent skip; then once more with tiered compilation off, so the
#      kernels also run as fully optimized JIT code from their first call.
#
# Idempotent: steps 1-2 are cached (BITMOE_CI_CACHE, default .ci-cache/ in the repository, git-ignored);
# step 3 is an incremental publish. Environment: BITMOE_CI_CACHE (cache folder). The arm64 packages come
# from this machine's own apt sources, asked for the arm64 architecture.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${BITMOE_CI_CACHE:-$root/.ci-cache}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
sysroot="$cache/arm64-sysroot"
# what the .NET runtime links against (readelf -d); no libicu: the project sets InvariantGlobalization
packages=(libc6 libstdc++6 libgcc-s1)

die() { echo "neon-check: error: $*" >&2; exit 1; }
step() { echo "neon-check: $* [$((SECONDS - t0)) s]"; }
t0=$SECONDS
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

[[ "$(uname -m)" == "x86_64" ]] || [[ "$(uname -m)" == "aarch64" ]] || die "unsupported host architecture $(uname -m)"

# --- 1. qemu ------------------------------------------------------------------------------------------
qemu=()
if [[ "$(uname -m)" == "aarch64" ]]; then
    step "native arm64 host: no emulation"
else
    if ! command -v qemu-aarch64-static >/dev/null; then
        command -v apt-get >/dev/null || die "qemu-aarch64-static is missing and there is no apt-get to install it (install qemu-user-static)"
        [[ $EUID -eq 0 ]] || die "qemu-aarch64-static is missing; installing qemu-user-static needs root (or run: sudo apt-get install qemu-user-static)"
        step "installing qemu-user-static"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y -qq qemu-user-static >/dev/null || die "apt-get install qemu-user-static failed"
        command -v qemu-aarch64-static >/dev/null || die "qemu-user-static installed, but qemu-aarch64-static is not on PATH"
    fi
    step "$(qemu-aarch64-static --version | head -n 1)"
    qemu=(qemu-aarch64-static -cpu max -L "$sysroot")
fi

# --- 2. arm64 sysroot ---------------------------------------------------------------------------------
stamp="$sysroot/.bitmoe-packages"
if [[ ${#qemu[@]} -gt 0 ]] && [[ "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ]]; then
    command -v apt-get >/dev/null || die "apt-get is needed to download the arm64 libraries (${packages[*]})"
    command -v dpkg >/dev/null || die "dpkg is needed to unpack the arm64 libraries"
    step "downloading arm64 ${packages[*]} from this machine's apt sources"
    apt_dir="$cache/arm64-apt"
    rm -rf "$apt_dir" "$sysroot"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    : >"$apt_dir/status"
    # the host's sources, but private lists, cache and (empty) dpkg status: nothing of the host's apt state changes
    apt_opts=(-q -oAPT::Architecture=arm64 -oAPT::Architectures=arm64
              -oDir::State::Lists="$apt_dir/lists" -oDir::State::status="$apt_dir/status"
              -oDir::Cache="$apt_dir/cache" -oDebug::NoLocking=1)
    apt-get "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 || { cat "$apt_dir/update.log" >&2; die "apt-get update for arm64 failed (see the log above)"; }
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}") >"$apt_dir/download.log" 2>&1 \
        || { cat "$apt_dir/download.log" >&2; die "apt-get download of arm64 ${packages[*]} failed"; }
    mkdir -p "$sysroot"
    for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
    # merged /usr: the loader is looked for at /lib/ld-linux-aarch64.so.1
    for d in lib lib64; do [[ -e "$sysroot/$d" ]] || ln -s "usr/$d" "$sysroot/$d"; done
    [[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ]] || die "the unpacked arm64 libc6 has no /lib/ld-linux-aarch64.so.1 (see $sysroot)"
    echo "${packages[*]}" >"$stamp"
    step "sysroot ready: $sysroot ($(du -sh "$sysroot" | cut -f1))"
elif [[ ${#qemu[@]} -gt 0 ]]; then
    step "sysroot cached: $sysroot"
fi

# --- 3. publish ---------------------------------------------------------------------------------------
command -v dotnet >/dev/null || die "dotnet (the .NET 10 SDK) is not on PATH"
out="$cache/neon/publish"
mkdir -p "$cache/neon"
step "publishing BitMoe.KernelCheck for linux-arm64 (self-contained, Release)"
# its own artifacts folder, so the solution's bin/ and obj/ (restored without a runtime) stay untouched
dotnet publish "$root/tests/BitMoe.KernelCheck/BitMoe.KernelCheck.csproj" -c Release -r linux-arm64 --self-contained \
    --artifacts-path "$cache/neon/artifacts" -o "$out" -v quiet -nologo >"$cache/neon/publish.log" 2>&1 \
    || { cat "$cache/neon/publish.log" >&2; die "dotnet publish -r linux-arm64 failed (the runtime packs come from nuget.org)"; }
app="$out/BitMoe.KernelCheck"
[[ -x "$app" ]] || die "publish produced no $app"
file_info="$(head -c 20 "$app" | od -An -tx1 | tr -d ' \n')"
[[ "${file_info:36:4}" == "b700" ]] || die "$app is not an arm64 (aarch64) executable"

# --- 4. run -------------------------------------------------------------------------------------------
run_check() {
    local label="$1"; shift
    step "running the kernel check under ${qemu[*]:-native arm64} ($label)"
    local log="$cache/neon/check-$label.log" rc=0
    env "$@" "${qemu[@]}" "$app" --require neon 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    if [[ $rc -ne 0 ]]; then
        grep -q "Neon gemv" "$log" || die "the arm64 kernel check did not run its NEON checks (exit code $rc; see above)"
        die "NEON kernels differ from the scalar reference ($label; exit code $rc; log: $log)"
    fi
    tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, 0 failed$' || die "unexpected last line from the kernel check ($label): $(tail -n 1 "$log")"
}
run_check tiered DOTNET_TieredCompilation=1
run_check fullopts DOTNET_TieredCompilation=0
step "NEON kernels equal the scalar reference"
