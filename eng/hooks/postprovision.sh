#!/bin/sh
# azd postprovision hook (POSIX). Prints the commands that finish the setup; it runs nothing against Azure and never
# handles a secret. azd exports the Bicep outputs (infra/main.bicep) as environment variables for hooks.
set -eu

vault="${AZURE_KEY_VAULT_NAME:?AZURE_KEY_VAULT_NAME is not set: run this through azd}"
table="${AZURE_TABLE_ENDPOINT:?AZURE_TABLE_ENDPOINT is not set: run this through azd}"
url="${AZURE_FUNCTION_APP_URL:?AZURE_FUNCTION_APP_URL is not set: run this through azd}"
pairs="${FUNCPROXY_UPSTREAM_SECRETS:-}"

cat <<TEXT

FuncProxy is provisioned. Finish the setup from a shell signed in with 'az login' as the same person who ran azd
(they were given Key Vault Secrets Officer on $vault and Storage Table Data Contributor on the tables).

1. Store each provider credential in Key Vault. Put the value in an environment variable first, so that it never
   lands in your shell history, then:
TEXT
if [ -z "$pairs" ]; then
  echo "   (no upstream in infra/main.bicep names a secret)"
fi
for pair in $pairs; do
  upstream="${pair%%=*}"
  secret="${pair#*=}"
  variable="$(printf '%s' "$upstream" | tr '[:lower:]-' '[:upper:]_')_API_KEY"
  echo "     az keyvault secret set --vault-name $vault --name $secret --value \"\$$variable\" --output none"
done
# The example key is for openai when it is configured, else for the first upstream listed.
case " $pairs " in
  *" openai="*) first_upstream="openai" ;;
  *) first_upstream="${pairs%%=*}"; first_upstream="${first_upstream:-openai}" ;;
esac

cat <<TEXT

2. Mint the first client key with the Server host's CLI, working straight on the cloud table with your own
   credentials (DefaultAzureCredential). The key is printed once; keep it somewhere safe. The empty
   ConnectionString overrides the Azurite one in the Server's appsettings.json, which would otherwise win.

     FuncProxy__Storage__ConnectionString= FuncProxy__Storage__TableServiceUri=$table \\
       dotnet run --project src/FuncProxy.Server -- keys create --name first-key --upstream $first_upstream

3. Call the gateway (deploy first with 'azd deploy' if 'azd provision' ran alone):

     curl -sS $url/api/health
     curl -sS $url/api/$first_upstream/models -H "Authorization: Bearer \$FUNCPROXY_KEY"

More in docs/deploy.md.
TEXT
