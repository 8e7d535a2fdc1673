#!/usr/bin/env bash
# Lints the infrastructure. Fails unless:
#   - every .bicep file builds and lints with no warning and no error (the Bicep CLI exits 0 on warnings, so its
#     diagnostics are read, not just its exit code), and every .bicepparam file builds the same way;
#   - azure.yaml validates against the Azure Developer CLI schema (shared/schemas/azure.yaml.json).
# Restores the pinned Bicep CLI (eng/bicep/Bicep.CommandLine.csproj) and the npm dev tools first when missing.
# Environment: FUNCPROXY_BICEP (path to a bicep binary), FUNCPROXY_AZURE_YAML_SCHEMA (path to the schema).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bicep_project="eng/bicep/Bicep.CommandLine.csproj"
version="$(sed -n 's:.*<BicepVersion>\(.*\)</BicepVersion>.*:\1:p' "$bicep_project")"
packages="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
bicep="${FUNCPROXY_BICEP:-$packages/azure.bicep.commandline.linux-x64/$version/tools/bicep}"

if [[ ! -f "$bicep" ]]; then
  echo "Restoring Bicep CLI $version (NuGet package Azure.Bicep.CommandLine.linux-x64)..."
  dotnet restore "$bicep_project" --nologo --verbosity quiet
fi
if [[ ! -x "$bicep" ]]; then
  chmod +x "$bicep"
fi
echo "Using $("$bicep" --version)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
checked=0

# Runs one bicep command; fails on a non-zero exit or on any Warning/Error diagnostic. Info diagnostics are shown.
check() {
  local what="$1"; shift
  local output rc=0
  output="$("$bicep" "$@" 2>&1)" || rc=$?
  checked=$((checked + 1))
  if [[ $rc -ne 0 ]] || grep -Eiq '(^| : )(warning|error)[ :]' <<<"$output"; then
    echo "FAIL $what (exit $rc)"
    [[ -n "$output" ]] && sed 's/^/    /' <<<"$output"
    failures=$((failures + 1))
  else
    echo "ok   $what"
    [[ -n "$output" ]] && sed 's/^/    /' <<<"$output"
  fi
  return 0
}

mapfile -t bicep_files < <(find . \( -name node_modules -o -name bin -o -name obj -o -name .git \) -prune -o -name '*.bicep' -print | sort)
mapfile -t param_files < <(find . \( -name node_modules -o -name bin -o -name obj -o -name .git \) -prune -o -name '*.bicepparam' -print | sort)
if [[ ${#bicep_files[@]} -eq 0 ]]; then
  echo "FAIL no .bicep files found under $root"
  exit 1
fi

# One CLI start per folder (each start costs seconds): --pattern builds or lints every .bicep file below it, and
# its diagnostics name the file. Files directly at the repository root are checked one by one.
echo "Checking ${#bicep_files[@]} .bicep file(s) and ${#param_files[@]} .bicepparam file(s)."
mapfile -t bicep_roots < <(printf '%s\n' "${bicep_files[@]}" | sed 's:^\./::' | awk -F/ 'NF > 1 { print $1 }' | sort -u)
mapfile -t root_files < <(printf '%s\n' "${bicep_files[@]}" | sed 's:^\./::' | awk -F/ 'NF == 1')
for dir in "${bicep_roots[@]}"; do
  check "bicep build $dir/**/*.bicep" build --pattern "$dir/**/*.bicep" --outdir "$tmp/$dir"
  check "bicep lint  $dir/**/*.bicep" lint --pattern "$dir/**/*.bicep"
done
for file in "${root_files[@]}"; do
  [[ -z "$file" ]] && continue
  check "bicep build $file" build "$file" --outfile "$tmp/$file.json"
  check "bicep lint  $file" lint "$file"
done
for file in "${param_files[@]}"; do
  check "bicep build-params $file" build-params "$file" --outfile "$tmp/out.parameters.json"
done

# azure.yaml against the azd schema: ajv (JSON Schema 2019-09) and yaml, pinned in package.json.
schema="${FUNCPROXY_AZURE_YAML_SCHEMA:-$root/../shared/schemas/azure.yaml.json}"
if [[ ! -f "$schema" ]]; then
  echo "FAIL azure.yaml: schema not found at $schema (set FUNCPROXY_AZURE_YAML_SCHEMA)"
  failures=$((failures + 1))
else
  if [[ ! -d node_modules/ajv || ! -d node_modules/yaml ]]; then
    echo "Installing the npm dev tools (npm ci)..."
    npm ci --no-audit --no-fund --loglevel=error
  fi
  checked=$((checked + 1))
  if node eng/validate-azure-yaml.mjs azure.yaml "$schema"; then
    echo "ok   azure.yaml matches $(basename "$schema")"
  else
    echo "FAIL azure.yaml does not match $(basename "$schema")"
    failures=$((failures + 1))
  fi
fi

echo "lint-infra: $((checked - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
