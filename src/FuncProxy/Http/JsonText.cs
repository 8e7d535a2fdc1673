using System.Text.Json;
using System.Text.Unicode;

namespace FuncProxy.Http;

/// <summary>
/// Strict parsing of JSON text from clients. <see cref="JsonDocument.Parse(ReadOnlyMemory{byte}, JsonDocumentOptions)"/>
/// checks the syntax but not the text inside strings: invalid UTF-8 and unpaired surrogate escapes (<c>"\ud800"</c>) only
/// surface later, as an <see cref="InvalidOperationException"/> from whichever <c>GetString</c>, <c>Name</c> or
/// <c>TryGetProperty</c> meets them first, which would make a bad request a 500. So every string and member name is
/// decoded once here, up front, and a member named twice in one object is refused (System.Text.Json's own
/// <see cref="JsonDocumentOptions.AllowDuplicateProperties"/>), so no reader can disagree with another about which one
/// counts. A document this returns can be read with any <see cref="JsonElement"/> method without that exception.
/// </summary>
public static class JsonText
{
    /// <summary>Why a text was refused, for a client to read.</summary>
    public const string InvalidJson = "The body is not valid JSON.";
    public const string InvalidText = "The body has a string that is not valid UTF-8 or holds an unpaired surrogate escape (such as \\ud800).";
    public const string DuplicateMember = "The body names a member more than once in one object.";

    /// <summary>Parses <paramref name="utf8"/>; on failure returns null and says why in <paramref name="error"/>.</summary>
    public static JsonDocument? TryParse(ReadOnlyMemory<byte> utf8, int maxDepth, out string? error)
    {
        var readerOptions = new JsonReaderOptions { MaxDepth = maxDepth };
        try
        {
            var reader = new Utf8JsonReader(utf8.Span, readerOptions);
            while (reader.Read())
            {
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && !IsValidText(ref reader))
                {
                    error = InvalidText;
                    return null;
                }
            }
        }
        catch (JsonException)
        {
            error = InvalidJson;
            return null;
        }
        try
        {
            error = null;
            return JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = maxDepth, AllowDuplicateProperties = false });
        }
        catch (JsonException)
        {
            // The syntax was checked above, so what is left is a member named twice.
            error = DuplicateMember;
            return null;
        }
    }

    private static bool IsValidText(ref Utf8JsonReader reader)
    {
        if (!reader.ValueIsEscaped && !reader.HasValueSequence)
        {
            return Utf8.IsValid(reader.ValueSpan);
        }
        try
        {
            // Unescaping is the only check the library offers for "\ud800"; a hostile body pays for its own exception.
            _ = reader.GetString();
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
