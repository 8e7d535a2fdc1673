using System.Text;
using System.Text.Json;

namespace FuncProxy.Proxying;

/// <summary>
/// The top-level <c>model</c> of a JSON request body held in memory: read it, or replace its value in place, leaving every
/// other byte of the body as the client sent it.
/// </summary>
internal static class JsonModelField
{
    /// <summary>The top-level string <c>model</c>, or null (not a JSON object, no such field, or not a string).</summary>
    public static string? Read(ReadOnlySpan<byte> json) => Find(json, out _, out _) is { } model ? model : null;

    /// <summary>The body with its top-level <c>model</c> set to <paramref name="model"/>; null when it has no string <c>model</c> to replace.</summary>
    public static byte[]? Replace(ReadOnlySpan<byte> json, string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Find(json, out var start, out var length) is null)
        {
            return null;
        }
        var value = Encoding.UTF8.GetBytes("\"" + JsonEncodedText.Encode(model).ToString() + "\"");
        var result = new byte[json.Length - length + value.Length];
        json[..start].CopyTo(result);
        value.CopyTo(result.AsSpan(start));
        json[(start + length)..].CopyTo(result.AsSpan(start + value.Length));
        return result;
    }

    private static string? Find(ReadOnlySpan<byte> json, out int start, out int length)
    {
        start = length = 0;
        var reader = new Utf8JsonReader(json, isFinalBlock: true, default);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isModel = reader.ValueTextEquals("model"u8);
                if (!reader.Read())
                {
                    return null;
                }
                if (isModel && reader.TokenType == JsonTokenType.String)
                {
                    start = (int)reader.TokenStartIndex;
                    length = reader.ValueSpan.Length + 2; // the raw (still escaped) value and its quotes
                    return reader.GetString();
                }
                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // Not JSON after all: the body goes as it is, and the upstream says what is wrong with it.
        }
        return null;
    }
}
