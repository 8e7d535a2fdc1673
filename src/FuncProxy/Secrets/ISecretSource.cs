namespace FuncProxy.Secrets;

/// <summary>Where upstream credentials come from: Key Vault in Azure, configuration locally.</summary>
public interface ISecretSource
{
    /// <summary>The secret's current value, or null when no secret has that name.</summary>
    Task<string?> GetSecretAsync(string name, CancellationToken cancellationToken);
}

/// <summary>Secret names as Key Vault allows them: 1-127 letters, digits and dashes.</summary>
public static class SecretNames
{
    public static bool IsValid(string? name) =>
        name is { Length: > 0 and <= 127 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-');
}
