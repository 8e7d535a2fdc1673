using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace FuncProxy.RateLimiting;

/// <summary>
/// The tokens a call is expected to use, reserved on admission: input from the body size
/// (<see cref="LimitOptions.BytesPerToken"/> bytes a token), output from the body's <c>max_tokens</c>,
/// <c>max_completion_tokens</c> or <c>max_output_tokens</c> (times <c>n</c>), else <see cref="LimitOptions.DefaultOutputTokens"/>.
/// At most <see cref="LimitOptions.TokenEstimatePeekBytes"/> of the body are read ahead; they are replayed in front of the
/// rest, so the body still streams to the upstream. The settlement corrects the estimate with the reported usage.
/// </summary>
internal static class TokenEstimate
{
    public static async ValueTask<long> ForRequestAsync(HttpRequest request, LimitOptions options, CancellationToken cancellationToken)
    {
        var length = request.ContentLength;
        if (length == 0 || (length is null && !request.Headers.TransferEncoding.Any()))
        {
            return 0;
        }
        long? maxOutput = null;
        long choices = 1;
        long seen = 0;
        if (IsJson(request.ContentType) && options.TokenEstimatePeekBytes > 0)
        {
            var buffer = new byte[(int)Math.Min(options.TokenEstimatePeekBytes, length ?? options.TokenEstimatePeekBytes)];
            var read = 0;
            int n;
            while (read < buffer.Length && (n = await request.Body.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false)) > 0)
            {
                read += n;
            }
            var complete = read < buffer.Length || read == length;
            request.Body = new PeekedRequestBody(buffer.AsMemory(0, read), request.Body);
            seen = read;
            (maxOutput, choices) = ReadOutputLimits(buffer.AsSpan(0, read), complete);
        }
        // Without a Content-Length, what was read ahead is the best guess; the settlement charges the rest.
        var bytes = length ?? seen;
        var input = (bytes + options.BytesPerToken - 1) / options.BytesPerToken;
        return input + ((maxOutput ?? options.DefaultOutputTokens) * Math.Max(choices, 1));
    }

    internal static bool IsJson(string? contentType) =>
        contentType is not null && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.Contains("+json", StringComparison.OrdinalIgnoreCase));

    /// <summary>Top-level <c>max_tokens</c> (or its newer names) and <c>n</c> from the start of a JSON body.</summary>
    internal static (long? MaxOutput, long Choices) ReadOutputLimits(ReadOnlySpan<byte> json, bool isFinalBlock)
    {
        long? maxOutput = null;
        long choices = 1;
        var reader = new Utf8JsonReader(json, isFinalBlock, default);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return (null, 1);
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isMax = reader.ValueTextEquals("max_tokens"u8) || reader.ValueTextEquals("max_completion_tokens"u8) || reader.ValueTextEquals("max_output_tokens"u8);
                var isChoices = reader.ValueTextEquals("n"u8);
                if (!reader.Read())
                {
                    break;
                }
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) && value >= 0)
                {
                    if (isMax)
                    {
                        maxOutput = value;
                    }
                    else if (isChoices)
                    {
                        choices = value;
                    }
                }
                else if (!reader.TrySkip())
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Not JSON after all (InvalidOperationException: a member name with an unpaired surrogate escape such as
            // "\ud800", which the reader only notices when it compares the name): the defaults apply and the upstream
            // will say what is wrong with it.
        }
        return (maxOutput, choices);
    }
}

/// <summary>A request body whose first bytes were read ahead: replays them, then reads on from the original stream.</summary>
internal sealed class PeekedRequestBody(ReadOnlyMemory<byte> prefix, Stream rest) : Stream
{
    private ReadOnlyMemory<byte> _prefix = prefix;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
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
