# azd postprovision hook (Windows, PowerShell 7). Prints the commands that finish the setup; it runs nothing against
# Azure and never handles a secret. azd exports the Bicep outputs (infra/main.bicep) as environment variables.
$ErrorActionPreference = 'Stop'

function Get-RequiredVariable([string] $name) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ([string]::IsNullOrEmpty($value)) { throw "$name is not set: run this through azd" }
    return $value
}

$vault = Get-RequiredVariable 'AZURE_KEY_VAULT_NAME'
$table = Get-RequiredVariable 'AZURE_TABLE_ENDPOINT'
$url = Get-RequiredVariable 'AZURE_FUNCTION_APP_URL'
$pairs = @(([string]$env:FUNCPROXY_UPSTREAM_SECRETS).Split(' ', [StringSplitOptions]::RemoveEmptyEntries))

Write-Host ""
Write-Host "FuncProxy is provisioned. Finish the setup from a shell signed in with 'az login' as the same person who ran azd"
Write-Host "(they were given Key Vault Secrets Officer on $vault and Storage Table Data Contributor on the tables)."
Write-Host ""
Write-Host "1. Store each provider credential in Key Vault. Put the value in an environment variable first, so that it never"
Write-Host "   lands in your shell history, then:"
if ($pairs.Count -eq 0) { Write-Host "   (no upstream in infra/main.bicep names a secret)" }
foreach ($pair in $pairs) {
    $upstream, $secret = $pair.Split('=', 2)
    $variable = ($upstream.ToUpperInvariant() -replace '-', '_') + '_API_KEY'
    Write-Host "     az keyvault secret set --vault-name $vault --name $secret --value `"`$env:$variable`" --output none"
}

$firstUpstream = 'openai'
if ($pairs.Count -gt 0 -and -not ($pairs | Where-Object { $_.StartsWith('openai=') })) {
    $firstUpstream = $pairs[0].Split('=', 2)[0]
}

Write-Host ""
Write-Host "2. Mint the first client key with the Server host's CLI, working straight on the cloud table with your own"
Write-Host "   credentials (DefaultAzureCredential). The key is printed once; keep it somewhere safe. The blank"
Write-Host "   ConnectionString overrides the Azurite one in the Server's appsettings.json (an empty value would unset it)."
Write-Host ""
Write-Host "     `$env:FuncProxy__Storage__ConnectionString = ' '"
Write-Host "     `$env:FuncProxy__Storage__TableServiceUri = '$table'"
Write-Host "     dotnet run --project src/FuncProxy.Server -- keys create --name first-key --upstream $firstUpstream"
Write-Host ""
Write-Host "3. Call the gateway (deploy first with 'azd deploy' if 'azd provision' ran alone):"
Write-Host ""
Write-Host "     curl.exe -sS $url/api/health"
Write-Host "     curl.exe -sS $url/api/$firstUpstream/models -H `"Authorization: Bearer `$env:FUNCPROXY_KEY`""
Write-Host ""
Write-Host "More in docs/deploy.md."
