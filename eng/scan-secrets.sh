#!/usr/bin/env bash
# Secret scan of every tracked file with secretlint (pinned in package.json): its recommended preset plus the patterns
# in .secretlintrc.json (Azure Storage keys and connection strings, FuncProxy client and admin keys). Allow-listed
# there, each with its reason: Azurite's published development key. Ignored in .secretlintignore: package-lock.json.
# First a canary: a file with fake secrets of each kind must be caught, so a broken scanner cannot pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."

# Inside the work tree: secretlint 11 refuses paths outside its working directory. Never tracked (removed on exit).
canary_dir="$(mktemp -d "$PWD/.secretlint-canary.XXXXXX")"
trap 'rm -rf "$canary_dir"' EXIT
node -e '
const { randomBytes } = require("node:crypto");
const b62 = (n) => Array.from(randomBytes(n), (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[b % 62]).join("");
console.log("AccountKey=" + randomBytes(64).toString("base64"));
console.log("fpk_abcdefghijklmnop_" + b62(49));
console.log("token: ghp_" + b62(36));
' > "$canary_dir/canary.txt"
found="$(npx --no-install secretlint --maskSecrets --format json "$canary_dir/canary.txt" || true)"
for rule in '"@secretlint/secretlint-rule-pattern"' 'secretlint-rule-github'; do
  if ! grep -q -- "$rule" <<<"$found"; then
    echo "secretlint missed the canary for $rule: the scanner or its configuration is broken" >&2
    exit 1
  fi
done
if [ "$(grep -o '"ruleId"' <<<"$found" | wc -l)" -lt 3 ]; then
  echo "secretlint found fewer than the 3 canary secrets" >&2
  exit 1
fi

git ls-files -z | xargs -0 npx --no-install secretlint --maskSecrets
echo "secretlint: no secrets in $(git ls-files | wc -l) tracked files"
