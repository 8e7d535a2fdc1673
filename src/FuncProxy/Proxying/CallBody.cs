using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace FuncProxy.Proxying;

/// <summary>
/// What the gateway reads ahead from a JSON request body, once per call: the <c>model</c>, the output limit
/// (<c>max_tokens</c>, <c>max_completion_tokens</c> or <c>max_output_tokens</c>), <c>n</c>, <c>stream</c> and
/// <c>stream_options.include_usage</c>. Only the first <see cref="LimitOptions.TokenEstimatePeekBytes"/> are read; they
/// are replayed in front of the rest, so the body still streams to the upstream and is never buffered whole. Fields that
/// lie beyond the read-ahead are not seen (the model normally comes first). The read-ahead can be edited before it is
/// replayed (<see cref="Rewrite"/>): the model replaced by an alias, <c>stream_options.include_usage</c> added.
/// </summary>
internal sealed class CallBody
{
    /// <summary>Longest model name accepted; longer ones are refused before anything is counted or stored.</summary>
    public const int MaxModelLength = 256;

    /// <summary>A call without a body (or without a JSON one).</summary>
    public static readonly CallBody Empty = new([], 0, complete: true);

    private readonly byte[] _prefix;
    private readonly int _prefixLength;
    private readonly bool _complete;
    private int _objectStart = -1;
    private (int Start, int End)? _modelToken;
    private (int Start, int End)? _streamOptionsToken;
    private (int Start, int End)? _includeUsageToken;
    private bool _streamOptionsEmpty;
    private PeekedRequestBody? _replay;

    private CallBody(byte[] prefix, int length, bool complete)
    {
        _prefix = prefix;
        _prefixLength = length;
        _complete = complete;
    }

    /// <summary>The model the body names, when it names one (as a string) within the read-ahead.</summary>
    public string? Model { get; private set; }

    /// <summary>True when a <c>model</c> field was seen but is not a usable name (not a string, too long, control characters).</summary>
    public bool ModelInvalid { get; private set; }

    public long? MaxOutputTokens { get; private set; }

    /// <summary>
    /// A member the gateway reads (<c>model</c>, an output limit, <c>n</c>, <c>stream</c>, <c>stream_options</c>) that the
    /// top-level object names more than once within the read-ahead; null when none is. Such a body is refused: the
    /// gateway would judge one value while the upstream's parser might use the other (an allow-list or quota bypass).
    /// </summary>
    public string? DuplicateMember { get; private set; }

    /// <summary><c>n</c>: how many choices are generated (1 when absent).</summary>
    public long Choices { get; private set; } = 1;

    public bool Stream { get; private set; }

    /// <summary><c>stream_options.include_usage</c> as the client sent it; null when absent.</summary>
    public bool? IncludeUsage { get; private set; }

    /// <summary>The body's size: its Content-Length, or what was read ahead when there is none.</summary>
    public long Bytes { get; private set; }

    /// <summary>True when the call has a body (JSON or not).</summary>
    public bool HasBody { get; private set; }

    /// <summary>
    /// Reads ahead. The body read so far is put back in <c>request.Body</c> in front of the rest. A body that crosses the
    /// upstream's size limit while it is read throws <see cref="RequestBodyTooLargeException"/>.
    /// </summary>
    public static async ValueTask<CallBody> ReadAsync(HttpRequest request, int peekBytes, CancellationToken cancellationToken)
    {
        var length = request.ContentLength;
        if (length == 0 || (length is null && !request.Headers.TransferEncoding.Any()))
        {
            return Empty;
        }
        if (!IsJson(request.ContentType) || peekBytes <= 0)
        {
            return new CallBody([], 0, complete: false) { Bytes = length ?? 0, HasBody = true };
        }
        var buffer = new byte[(int)Math.Min(peekBytes, length ?? peekBytes)];
        var read = 0;
        int n;
        while (read < buffer.Length && (n = await request.Body.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false)) > 0)
        {
            read += n;
        }
        var complete = read < buffer.Length || read == length;
        var body = Parse(buffer, read, complete);
        body.Bytes = length ?? read;
        body.HasBody = true;
        body._replay = new PeekedRequestBody(buffer.AsMemory(0, read), request.Body);
        request.Body = body._replay;
        return body;
    }

    /// <summary>Reads the fields from the start of a JSON body (<paramref name="complete"/>: nothing follows).</summary>
    public static CallBody Parse(byte[] json, int length, bool complete)
    {
        ArgumentNullException.ThrowIfNull(json);
        var body = new CallBody(json, length, complete) { Bytes = length, HasBody = length > 0 };
        body.ReadFields();
        return body;
    }

    /// <summary>True for <c>application/json</c> and any <c>+json</c> media type.</summary>
    internal static bool IsJson(string? contentType) =>
        contentType is not null && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.Contains("+json", StringComparison.OrdinalIgnoreCase));

    private void ReadFields()
    {
        var reader = new Utf8JsonReader(_prefix.AsSpan(0, _prefixLength), _complete, default);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return;
            }
            _objectStart = (int)reader.BytesConsumed;
            var seen = 0; // one bit per ReadMembers entry
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (ReadMemberIndex(ref reader) is var index and >= 0)
                {
                    if ((seen & (1 << index)) != 0)
                    {
                        DuplicateMember ??= ReadMembers[index];
                    }
                    seen |= 1 << index;
                }
                if (reader.ValueTextEquals("model"u8))
                {
                    if (!reader.Read())
                    {
                        break;
                    }
                    ReadModel(ref reader);
                    if (!reader.TrySkip())
                    {
                        break;
                    }
                    continue;
                }
                if (reader.ValueTextEquals("stream_options"u8))
                {
                    if (!reader.Read() || !ReadStreamOptions(ref reader))
                    {
                        break;
                    }
                    continue;
                }
                var isMax = reader.ValueTextEquals("max_tokens"u8) || reader.ValueTextEquals("max_completion_tokens"u8) || reader.ValueTextEquals("max_output_tokens"u8);
                var isChoices = reader.ValueTextEquals("n"u8);
                var isStream = reader.ValueTextEquals("stream"u8);
                if (!reader.Read())
                {
                    break;
                }
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) && value >= 0)
                {
                    if (isMax)
                    {
                        MaxOutputTokens = value;
                    }
                    else if (isChoices)
                    {
                        Choices = Math.Max(value, 1);
                    }
                }
                else if (isStream && reader.TokenType is JsonTokenType.True or JsonTokenType.False)
                {
                    Stream = reader.TokenType == JsonTokenType.True;
                }
                else if (!reader.TrySkip())
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Not JSON (or not UTF-8) after all: what was read so far stands, and the upstream will say what is wrong.
        }
    }

    private static readonly string[] ReadMembers = ["model", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "stream"];

    /// <summary>The index in <see cref="ReadMembers"/> of the member when the read-ahead reads it (escapes decoded, as a parser would), else -1.</summary>
    private static int ReadMemberIndex(ref Utf8JsonReader reader)
    {
        for (var i = 0; i < ReadMembers.Length; i++)
        {
            if (reader.ValueTextEquals(ReadMembers[i]))
            {
                return i;
            }
        }
        return -1;
    }

    private void ReadModel(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            ModelInvalid = true;
            return;
        }
        var start = (int)reader.TokenStartIndex;
        string model;
        try
        {
            model = ModelNames.Read(ref reader)!;
        }
        catch (InvalidOperationException)
        {
            ModelInvalid = true;
            return;
        }
        if (model.Length is 0 or > MaxModelLength || HasControl(model))
        {
            ModelInvalid = true;
            return;
        }
        Model = model;
        ModelInvalid = false;
        _modelToken = (start, (int)reader.BytesConsumed);
    }

    private static bool HasControl(string text)
    {
        foreach (var c in text)
        {
            if (char.IsControl(c))
            {
                return true;
            }
        }
        return false;
    }

    /// <returns>False when the reader ran out of read-ahead.</returns>
    private bool ReadStreamOptions(ref Utf8JsonReader reader)
    {
        var start = (int)reader.TokenStartIndex;
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            if (!reader.TrySkip())
            {
                return false;
            }
            _streamOptionsToken = (start, (int)reader.BytesConsumed);
            _streamOptionsEmpty = false;
            return true;
        }
        var empty = true;
        var sawIncludeUsage = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            empty = false;
            var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
            if (isIncludeUsage && sawIncludeUsage)
            {
                DuplicateMember ??= "stream_options.include_usage";
            }
            sawIncludeUsage |= isIncludeUsage;
            if (!reader.Read())
            {
                return false;
            }
            if (isIncludeUsage)
            {
                IncludeUsage = reader.TokenType switch
                {
                    JsonTokenType.True => true,
                    JsonTokenType.False => false,
                    _ => null,
                };
                _includeUsageToken = ((int)reader.TokenStartIndex, (int)reader.BytesConsumed);
            }
            if (!reader.TrySkip())
            {
                return false;
            }
        }
        if (reader.TokenType != JsonTokenType.EndObject)
        {
            return false;
        }
        _streamOptionsToken = (start, (int)reader.BytesConsumed);
        _streamOptionsEmpty = empty;
        return true;
    }

    /// <summary>
    /// True when <see cref="Rewrite"/> can set <c>stream_options.include_usage</c>: the body is a JSON object. A
    /// <c>stream_options</c> beyond the read-ahead is not seen; the one added at the start then comes first, and a provider
    /// that keeps the last of two equal names keeps the client's.
    /// </summary>
    public bool CanAddIncludeUsage => _objectStart > 0;

    /// <summary>
    /// Edits the read-ahead before it is replayed: the <c>model</c> value becomes <paramref name="model"/> (when not null),
    /// and with <paramref name="addIncludeUsage"/> <c>stream_options.include_usage</c> becomes <c>true</c> (added when absent).
    /// Adjusts <c>Content-Length</c>. Returns false (and changes nothing) when the fields lie beyond the read-ahead.
    /// </summary>
    public bool Rewrite(HttpRequest request, string? model, bool addIncludeUsage)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_replay is null || (model is not null && _modelToken is null) || (addIncludeUsage && !CanAddIncludeUsage))
        {
            return false;
        }
        var edits = new List<(int Start, int End, byte[] Text)>(2);
        if (model is not null)
        {
            edits.Add((_modelToken!.Value.Start, _modelToken.Value.End, JsonSerializer.SerializeToUtf8Bytes(model)));
        }
        if (addIncludeUsage && IncludeUsage != true)
        {
            edits.Add(IncludeUsageEdit());
        }
        if (edits.Count == 0)
        {
            return true;
        }
        edits.Sort((a, b) => a.Start.CompareTo(b.Start));
        var output = new MemoryStream(_prefixLength + 64);
        var at = 0;
        foreach (var (start, end, text) in edits)
        {
            output.Write(_prefix, at, start - at);
            output.Write(text);
            at = end;
        }
        output.Write(_prefix, at, _prefixLength - at);
        var edited = output.ToArray();
        var delta = edited.Length - _prefixLength;
        _replay.ReplacePrefix(edited);
        if (request.ContentLength is { } length)
        {
            request.ContentLength = length + delta;
        }
        Bytes += delta;
        if (model is not null)
        {
            Model = model;
        }
        if (addIncludeUsage)
        {
            IncludeUsage = true;
        }
        return true;
    }

    /// <summary>
    /// A whole JSON body held in memory (read with <see cref="Parse"/>, <c>complete</c>) with its top-level <c>model</c>
    /// set to <paramref name="model"/>, every other byte as it was; null when the body names no usable string <c>model</c>.
    /// Used per attempt for a backend's deployment map, on the body already edited by <see cref="Rewrite"/>.
    /// </summary>
    public byte[]? WithModel(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (_modelToken is not { } token || !_complete)
        {
            return null;
        }
        var value = JsonSerializer.SerializeToUtf8Bytes(model);
        var result = new byte[_prefixLength - (token.End - token.Start) + value.Length];
        _prefix.AsSpan(0, token.Start).CopyTo(result);
        value.CopyTo(result.AsSpan(token.Start));
        _prefix.AsSpan(token.End, _prefixLength - token.End).CopyTo(result.AsSpan(token.Start + value.Length));
        return result;
    }

    private (int Start, int End, byte[] Text) IncludeUsageEdit()
    {
        if (_includeUsageToken is { } value)
        {
            return (value.Start, value.End, "true"u8.ToArray());
        }
        if (_streamOptionsToken is { } options)
        {
            if (_prefix[options.Start] != (byte)'{')
            {
                // "stream_options": null (or something else the upstream would refuse anyway).
                return (options.Start, options.End, """{"include_usage":true}"""u8.ToArray());
            }
            var text = _streamOptionsEmpty ? "\"include_usage\":true"u8.ToArray() : "\"include_usage\":true,"u8.ToArray();
            return (options.Start + 1, options.Start + 1, text);
        }
        var bodyEmpty = _complete && _prefix.AsSpan(_objectStart, _prefixLength - _objectStart).Trim(" \t\r\n"u8).SequenceEqual("}"u8);
        var insert = bodyEmpty ? "\"stream_options\":{\"include_usage\":true}" : "\"stream_options\":{\"include_usage\":true},";
        return (_objectStart, _objectStart, Encoding.UTF8.GetBytes(insert));
    }
}

/// <summary>A request body whose first bytes were read ahead: replays them, then reads on from the original stream.</summary>
internal sealed class PeekedRequestBody(ReadOnlyMemory<byte> prefix, Stream rest) : Stream
{
    private ReadOnlyMemory<byte> _prefix = prefix;
    private bool _started;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Replaces what is replayed, before anything was read.</summary>
    public void ReplacePrefix(ReadOnlyMemory<byte> prefix)
    {
        if (_started)
        {
            throw new InvalidOperationException("The read-ahead was already replayed.");
        }
        _prefix = prefix;
    }

    /// <summary>
    /// Takes the whole body at once when the read-ahead is all of it (an array of exactly <paramref name="contentLength"/>
    /// bytes, nothing replayed yet): what would otherwise be read again into an array of that size. The stream is then at its end.
    /// </summary>
    public bool TryTakeWhole(long? contentLength, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out byte[]? whole)
    {
        whole = null;
        if (_started || contentLength != _prefix.Length
            || !System.Runtime.InteropServices.MemoryMarshal.TryGetArray(_prefix, out var segment)
            || segment.Offset != 0 || segment.Count != segment.Array!.Length)
        {
            return false;
        }
        _started = true;
        _prefix = ReadOnlyMemory<byte>.Empty;
        whole = segment.Array;
        return true;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        _started = true;
        if (!_prefix.IsEmpty)
        {
            return TakePrefix(buffer);
        }
        return rest.Read(buffer);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        _started = true;
        if (!_prefix.IsEmpty)
        {
            return ValueTask.FromResult(TakePrefix(buffer.Span));
        }
        return rest.ReadAsync(buffer, cancellationToken);
    }

    private int TakePrefix(Span<byte> buffer)
    {
        var n = Math.Min(buffer.Length, _prefix.Length);
        _prefix.Span[..n].CopyTo(buffer);
        _prefix = _prefix[n..];
        return n;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
