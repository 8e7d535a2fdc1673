using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace FuncProxy.Proxying;

/// <summary>
/// Wraps <c>HttpResponse.Body</c>: every byte passes straight through to the client, and a <see cref="UsageScanner"/> chosen
/// by the response's content type (known by the first write) reads token usage on the way. The body is never buffered.
/// Bodies are identity-encoded: the gateway asks upstreams for no compression.
/// <para>
/// When the gateway itself asked a chat completions stream for usage (<see cref="SpendOptions.IncludeStreamUsage"/>), the
/// client did not, so the extra chunk it would not expect is removed: the event whose JSON has an empty <c>choices</c>
/// array and a <c>usage</c> object. Events are then passed on whole (each is held until its blank line), which is how
/// providers write them anyway.
/// </para>
/// </summary>
internal sealed class UsageReadingStream : Stream
{
    private const int MaxHeldBytes = 1024 * 1024;

    private readonly Stream _inner;
    private readonly HttpResponse _response;
    private readonly bool _stripUsageChunk;
    private UsageScanner? _scanner;
    private ArrayBufferWriter<byte>? _pending;
    private bool _started;

    public UsageReadingStream(Stream inner, HttpResponse response, bool stripUsageChunk = false)
    {
        _inner = inner;
        _response = response;
        _stripUsageChunk = stripUsageChunk;
    }

    public TokenUsage Usage => _scanner?.Usage ?? default;

    public string? ResponseModel => _scanner?.ResponseModel;

    /// <summary>True when the response is server-sent events (a stream).</summary>
    public bool IsStream => _scanner is SseUsageScanner;

    /// <summary>Time of the first body write (for time to first chunk), in <see cref="System.Diagnostics.Stopwatch"/> ticks; 0 before.</summary>
    public long FirstWriteTimestamp { get; private set; }

    /// <summary>Usage-only chunks kept from the client.</summary>
    public int StrippedEvents { get; private set; }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    private void Scan(ReadOnlySpan<byte> bytes)
    {
        if (!_started)
        {
            _started = true;
            FirstWriteTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            var encoded = _response.Headers.ContentEncoding.Count > 0 && _response.Headers.ContentEncoding.ToString() != "identity";
            _scanner = encoded ? null : UsageScanner.For(_response.ContentType);
            if (_stripUsageChunk && _scanner is SseUsageScanner)
            {
                _pending = new ArrayBufferWriter<byte>(4096);
            }
        }
        _scanner?.Feed(bytes);
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Scan(buffer);
        if (_pending is null)
        {
            _inner.Write(buffer);
            return;
        }
        var ready = Filter(buffer);
        if (ready.Length > 0)
        {
            _inner.Write(ready);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Scan(buffer.Span);
        if (_pending is null)
        {
            return _inner.WriteAsync(buffer, cancellationToken);
        }
        var ready = Filter(buffer.Span);
        return ready.Length > 0 ? _inner.WriteAsync(ready, cancellationToken) : ValueTask.CompletedTask;
    }

    /// <summary>Writes what the filter still holds (a last event without its blank line).</summary>
    public async ValueTask CompleteAsync()
    {
        if (_pending is { WrittenCount: > 0 } pending)
        {
            var rest = pending.WrittenMemory.ToArray();
            pending.ResetWrittenCount();
            await _inner.WriteAsync(rest).ConfigureAwait(false);
        }
    }

    /// <summary>Adds <paramref name="chunk"/> to what is held and returns the complete events that may go to the client.</summary>
    private byte[] Filter(ReadOnlySpan<byte> chunk)
    {
        var pending = _pending!;
        pending.Write(chunk);
        var held = pending.WrittenSpan;
        var output = new ArrayBufferWriter<byte>(held.Length);
        var at = 0;
        while (true)
        {
            var end = EventEnd(held[at..]);
            if (end < 0)
            {
                break;
            }
            var sseEvent = held.Slice(at, end);
            if (IsUsageOnlyChunk(sseEvent))
            {
                StrippedEvents++;
            }
            else
            {
                output.Write(sseEvent);
            }
            at += end;
        }
        var rest = held[at..].ToArray();
        pending.ResetWrittenCount();
        if (rest.Length > MaxHeldBytes)
        {
            // Not server-sent events after all (no blank lines): stop filtering rather than hold the body back.
            output.Write(rest);
            _pending = null;
        }
        else
        {
            pending.Write(rest);
        }
        return output.WrittenSpan.ToArray();
    }

    /// <summary>The length of the first complete event (through its blank line), or -1.</summary>
    private static int EventEnd(ReadOnlySpan<byte> data)
    {
        for (var i = data.IndexOf((byte)'\n'); i >= 0 && i < data.Length - 1;)
        {
            if (data[i + 1] == (byte)'\n')
            {
                return i + 2;
            }
            if (data[i + 1] == (byte)'\r' && i + 2 < data.Length && data[i + 2] == (byte)'\n')
            {
                return i + 3;
            }
            var next = data[(i + 1)..].IndexOf((byte)'\n');
            i = next < 0 ? -1 : i + 1 + next;
        }
        return -1;
    }

    private static bool IsUsageOnlyChunk(ReadOnlySpan<byte> sseEvent)
    {
        if (sseEvent.IndexOf("\"usage\""u8) < 0)
        {
            return false;
        }
        var text = System.Text.Encoding.UTF8.GetString(sseEvent);
        var data = string.Join('\n', text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.StartsWith("data:", StringComparison.Ordinal))
            .Select(l => l[5..].StartsWith(' ') ? l[6..] : l[5..]));
        try
        {
            using var document = JsonDocument.Parse(data);
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object
                && root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() == 0
                && root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    public override void Flush() => _inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
