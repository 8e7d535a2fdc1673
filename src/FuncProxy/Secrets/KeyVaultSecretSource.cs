using Azure;
using Azure.Security.KeyVault.Secrets;

namespace FuncProxy.Secrets;

/// <summary>Secrets from Azure Key Vault through the shared <see cref="SecretClient"/> (managed identity in Azure).</summary>
public sealed class KeyVaultSecretSource : ISecretSource
{
    private readonly SecretClient _client;

    public KeyVaultSecretSource(SecretClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
    }

    public async Task<string?> GetSecretAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            var secret = await _client.GetSecretAsync(name, version: null, cancellationToken).ConfigureAwait(false);
            return secret.Value.Properties.Enabled == false ? null : secret.Value.Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
    }
}
