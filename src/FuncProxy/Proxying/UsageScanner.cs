using System.Buffers;
using System.Text.Json;

namespace FuncProxy.Proxying;

/// <summary>
/// Token usage as the upstream reported it; null fields were not reported. <see cref="InputTokens"/> counts every input
/// token, including those read from (<see cref="CachedInputTokens"/>) or written to (<see cref="CacheWriteInputTokens"/>)
/// the provider's prompt cache.
/// </summary>
public readonly record struct TokenUsage(long? InputTokens, long? OutputTokens, long? CachedInputTokens = null, long? CacheWriteInputTokens = null)
{
    public bool IsKnown => InputTokens is not null || OutputTokens is not null;

    public long Total => (InputTokens ?? 0) + (OutputTokens ?? 0);
}

/// <summary>Reads token usage out of a response body chunk by chunk, as it streams past, keeping only what it must.</summary>
internal abstract class UsageScanner
{
    /// <summary>Past this much held back (one JSON token or one SSE event), the scanner gives up rather than buffer the body.</summary>
    protected const int MaxHeldBytes = 1024 * 1024;

    public TokenUsage Usage { get; protected set; }

    /// <summary>The model the response names (<c>model</c>, or that of its <c>message</c>/<c>response</c>), when it names one.</summary>
    public string? ResponseModel { get; protected set; }

    public abstract void Feed(ReadOnlySpan<byte> chunk);

    /// <summary>A scanner for the response's content type, or null when usage cannot be in it.</summary>
    public static UsageScanner? For(string? contentType)
    {
        if (contentType is null)
        {
            return null;
        }
        if (contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            return new SseUsageScanner();
        }
        if (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) || contentType.Contains("+json", StringComparison.OrdinalIgnoreCase))
        {
            return new JsonUsageScanner();
        }
        return null;
    }

    /// <summary>
    /// Applies one <c>usage</c> object: OpenAI's <c>prompt_tokens</c>/<c>completion_tokens</c>, or the <c>input_tokens</c>/
    /// <c>output_tokens</c> of Anthropic and OpenAI Responses (plus Anthropic's cache token counts, which its input excludes).
    /// A later report replaces an earlier one field by field (Anthropic's <c>message_delta</c> carries the final output count).
    /// Cached input: OpenAI's <c>prompt_tokens_details.cached_tokens</c> (chat) or <c>input_tokens_details.cached_tokens</c>
    /// (Responses), Anthropic's <c>cache_read_input_tokens</c>; cache writes: Anthropic's <c>cache_creation_input_tokens</c>.
    /// </summary>
    protected static TokenUsage Merge(TokenUsage current, long? prompt, long? input, long? cacheCreation, long? cacheRead, long? completion, long? output, long? cachedDetail = null)
    {
        long? newInput = prompt ?? input;
        if (newInput is not null && (cacheCreation is not null || cacheRead is not null))
        {
            newInput += (cacheCreation ?? 0) + (cacheRead ?? 0);
        }
        return new TokenUsage(newInput ?? current.InputTokens, completion ?? output ?? current.OutputTokens,
            cachedDetail ?? cacheRead ?? current.CachedInputTokens, cacheCreation ?? current.CacheWriteInputTokens);
    }
}

/// <summary>A JSON body: the top-level <c>usage</c> object, read with a resumable <see cref="Utf8JsonReader"/>.</summary>
internal sealed class JsonUsageScanner : UsageScanner
{
    private JsonReaderState _state;
    private byte[] _held = [];
    private int _heldLength;
    private bool _failed;
    private bool _usageNext;
    private bool _modelNext;
    private bool _inUsage;
    private bool _detailsNext;
    private bool _inDetails;
    private string? _field;
    private long? _prompt, _input, _cacheCreation, _cacheRead, _completion, _output, _cachedDetail;

    public override void Feed(ReadOnlySpan<byte> chunk)
    {
        if (_failed || chunk.IsEmpty)
        {
            return;
        }
        byte[]? rented = null;
        ReadOnlySpan<byte> data = chunk;
        if (_heldLength > 0)
        {
            rented = ArrayPool<byte>.Shared.Rent(_heldLength + chunk.Length);
            _held.AsSpan(0, _heldLength).CopyTo(rented);
            chunk.CopyTo(rented.AsSpan(_heldLength));
            data = rented.AsSpan(0, _heldLength + chunk.Length);
        }
        try
        {
            var reader = new Utf8JsonReader(data, isFinalBlock: false, _state);
            while (reader.Read())
            {
                Handle(ref reader);
            }
            _state = reader.CurrentState;
            var rest = data[(int)reader.BytesConsumed..];
            if (rest.Length > MaxHeldBytes)
            {
                _failed = true;
                return;
            }
            if (_held.Length < rest.Length)
            {
                _held = new byte[Math.Max(rest.Length, 256)];
            }
            rest.CopyTo(_held);
            _heldLength = rest.Length;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a member name that is not valid text ("\ud800"). The upstream's body still
            // streams to the client unchanged; only its usage is not read.
            _failed = true;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    // The usage members this scanner reads, as the same strings every time: a member name is matched in place, not
    // allocated (a usage object has five to ten of them, on every call).
    private static readonly string[] UsageFields =
    [
        "prompt_tokens", "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "completion_tokens",
        "output_tokens", "prompt_tokens_details", "input_tokens_details",
    ];

    private static string? UsageField(ref Utf8JsonReader reader)
    {
        foreach (var field in UsageFields)
        {
            if (reader.ValueTextEquals(field))
            {
                return field;
            }
        }
        return null;
    }

    private void Handle(ref Utf8JsonReader reader)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.PropertyName when reader.CurrentDepth == 1:
                _usageNext = reader.ValueTextEquals("usage"u8);
                _modelNext = reader.ValueTextEquals("model"u8);
                break;
            case JsonTokenType.String when reader.CurrentDepth == 1 && _modelNext:
                _modelNext = false;
                try
                {
                    var model = ModelNames.Read(ref reader);
                    ResponseModel = model is { Length: > 0 and <= 256 } ? model : null;
                }
                catch (InvalidOperationException)
                {
                }
                break;
            case JsonTokenType.StartObject when reader.CurrentDepth == 1 && _usageNext:
                _inUsage = true;
                _usageNext = false;
                break;
            case JsonTokenType.PropertyName when reader.CurrentDepth == 2 && _inUsage:
                _field = UsageField(ref reader);
                _detailsNext = _field is "prompt_tokens_details" or "input_tokens_details";
                break;
            case JsonTokenType.StartObject when reader.CurrentDepth == 2 && _inUsage && _detailsNext:
                _inDetails = true;
                _detailsNext = false;
                break;
            case JsonTokenType.EndObject when reader.CurrentDepth == 2 && _inDetails:
                _inDetails = false;
                break;
            case JsonTokenType.PropertyName when reader.CurrentDepth == 3 && _inDetails:
                _field = reader.ValueTextEquals("cached_tokens"u8) ? "cached_tokens" : null;
                break;
            case JsonTokenType.Number when reader.CurrentDepth == 3 && _inDetails && _field == "cached_tokens" && reader.TryGetInt64(out var cached):
                _cachedDetail = cached;
                break;
            case JsonTokenType.Number when reader.CurrentDepth == 2 && _inUsage && reader.TryGetInt64(out var value):
                switch (_field)
                {
                    case "prompt_tokens": _prompt = value; break;
                    case "input_tokens": _input = value; break;
                    case "cache_creation_input_tokens": _cacheCreation = value; break;
                    case "cache_read_input_tokens": _cacheRead = value; break;
                    case "completion_tokens": _completion = value; break;
                    case "output_tokens": _output = value; break;
                }
                break;
            case JsonTokenType.EndObject when reader.CurrentDepth == 1 && _inUsage:
                _inUsage = false;
                Usage = Merge(Usage, _prompt, _input, _cacheCreation, _cacheRead, _completion, _output, _cachedDetail);
                break;
            default:
                if (reader.CurrentDepth <= 1 && reader.TokenType != JsonTokenType.PropertyName)
                {
                    _usageNext = false;
                }
                break;
        }
    }
}

/// <summary>
/// Server-sent events: collects each event's <c>data</c> lines and reads usage from the events that carry it: an OpenAI
/// chat chunk's <c>usage</c> (with <c>stream_options.include_usage</c>), OpenAI Responses' <c>response.completed</c>
/// (<c>response.usage</c>), Anthropic's <c>message_start</c> (<c>message.usage</c>) and <c>message_delta</c> (<c>usage</c>).
/// Events without the bytes <c>"usage"</c> are never parsed.
/// </summary>
internal sealed class SseUsageScanner : UsageScanner
{
    private readonly ArrayBufferWriter<byte> _line = new(256);
    private readonly ArrayBufferWriter<byte> _data = new(1024);
    private bool _skipEvent;

    public override void Feed(ReadOnlySpan<byte> chunk)
    {
        while (!chunk.IsEmpty)
        {
            var newline = chunk.IndexOf((byte)'\n');
            if (newline < 0)
            {
                Append(_line, chunk);
                return;
            }
            ReadOnlySpan<byte> line;
            if (_line.WrittenCount > 0)
            {
                Append(_line, chunk[..newline]);
                line = _line.WrittenSpan;
            }
            else
            {
                line = chunk[..newline];
            }
            OnLine(line.EndsWith("\r"u8) ? line[..^1] : line);
            _line.ResetWrittenCount();
            chunk = chunk[(newline + 1)..];
        }
    }

    private void Append(ArrayBufferWriter<byte> buffer, ReadOnlySpan<byte> bytes)
    {
        if (buffer.WrittenCount + bytes.Length > MaxHeldBytes)
        {
            _skipEvent = true;
            buffer.ResetWrittenCount();
            return;
        }
        buffer.Write(bytes);
    }

    private void OnLine(ReadOnlySpan<byte> line)
    {
        if (line.IsEmpty)
        {
            if (!_skipEvent && _data.WrittenCount > 0)
            {
                OnEvent(_data.WrittenSpan);
            }
            _data.ResetWrittenCount();
            _skipEvent = false;
            return;
        }
        if (!line.StartsWith("data:"u8))
        {
            return;
        }
        var value = line[5..];
        if (!value.IsEmpty && value[0] == (byte)' ')
        {
            value = value[1..];
        }
        if (_data.WrittenCount > 0)
        {
            Append(_data, "\n"u8);
        }
        Append(_data, value);
    }

    private void OnEvent(ReadOnlySpan<byte> data)
    {
        if (data.IndexOf("\"usage\""u8) < 0)
        {
            return;
        }
        try
        {
            var reader = new Utf8JsonReader(data);
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return;
            }
            Apply(root);
            if (root.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.Object)
            {
                Apply(message);
            }
            if (root.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object)
            {
                Apply(response);
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Not JSON, or a member name that is not valid text ("\ud800"): not a usage event.
        }
    }

    private void Apply(JsonElement owner)
    {
        if (owner.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.String && model.GetString() is { Length: > 0 and <= 256 } name)
        {
            ResponseModel = name;
        }
        if (!owner.TryGetProperty("usage", out var usage) || usage.ValueKind != JsonValueKind.Object)
        {
            return;
        }
        var details = usage.TryGetProperty("prompt_tokens_details", out var d) || usage.TryGetProperty("input_tokens_details", out d) ? d : default;
        Usage = Merge(Usage, Number(usage, "prompt_tokens"), Number(usage, "input_tokens"), Number(usage, "cache_creation_input_tokens"),
            Number(usage, "cache_read_input_tokens"), Number(usage, "completion_tokens"), Number(usage, "output_tokens"),
            details.ValueKind == JsonValueKind.Object ? Number(details, "cached_tokens") : null);
    }

    private static long? Number(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : null;
}

/// <summary>
/// The model names answers carry, kept as strings: a name seen lately is matched in place and its string reused, so a
/// response's <c>model</c> costs no allocation in the common case of a few models. Reads and writes race harmlessly
/// (strings are immutable; a lost write only means one more allocation).
/// </summary>
internal static class ModelNames
{
    private static readonly string?[] Recent = new string?[8];
    private static int _next;

    public static string? Read(ref Utf8JsonReader reader)
    {
        foreach (var name in Recent)
        {
            if (name is not null && reader.ValueTextEquals(name))
            {
                return name;
            }
        }
        var read = reader.GetString();
        if (read is { Length: > 0 and <= 256 })
        {
            Recent[(Interlocked.Increment(ref _next) & int.MaxValue) % Recent.Length] = read;
        }
        return read;
    }
}
