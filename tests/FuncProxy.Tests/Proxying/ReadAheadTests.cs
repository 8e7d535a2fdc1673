using System.Text;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Http;

namespace FuncProxy.Tests.Proxying;

/// <summary>
/// The read-ahead of a JSON body (<see cref="CallBody"/>) and the copy kept for a replay share one array when the read-ahead
/// is the whole body (issue 11: the body was read a second time into an array of the same size). A read-ahead that is only
/// the start of the body, or one already replayed, is never taken as the whole body.
/// </summary>
public sealed class ReadAheadTests
{
    private static DefaultHttpContext Request(string json, long? contentLength)
    {
        var context = new DefaultHttpContext();
        context.Request.ContentType = "application/json";
        context.Request.ContentLength = contentLength;
        context.Request.Body = new MemoryStream(Encoding.UTF8.GetBytes(json));
        return context;
    }

    [Fact]
    public async Task A_read_ahead_that_is_the_whole_body_is_taken_as_it_is_and_the_stream_is_then_at_its_end()
    {
        const string Json = """{"model":"gpt-4o","max_tokens":5}""";
        var context = Request(Json, Encoding.UTF8.GetByteCount(Json));

        var call = await CallBody.ReadAsync(context.Request, peekBytes: 4096, CancellationToken.None);

        Assert.Equal("gpt-4o", call.Model);
        var peeked = Assert.IsType<PeekedRequestBody>(context.Request.Body);
        Assert.True(peeked.TryTakeWhole(context.Request.ContentLength, out var whole));
        Assert.Equal(Json, Encoding.UTF8.GetString(whole));
        Assert.Equal(0, await peeked.ReadAsync(new byte[16]));
        Assert.False(peeked.TryTakeWhole(context.Request.ContentLength, out _));
    }

    [Fact]
    public async Task The_edited_read_ahead_is_what_is_taken_with_its_new_length()
    {
        const string Json = """{"model":"short","stream":true}""";
        var context = Request(Json, Encoding.UTF8.GetByteCount(Json));
        var call = await CallBody.ReadAsync(context.Request, peekBytes: 4096, CancellationToken.None);

        Assert.True(call.Rewrite(context.Request, "a-much-longer-model-name", addIncludeUsage: false));

        var peeked = Assert.IsType<PeekedRequestBody>(context.Request.Body);
        Assert.True(peeked.TryTakeWhole(context.Request.ContentLength, out var whole));
        Assert.Equal("""{"model":"a-much-longer-model-name","stream":true}""", Encoding.UTF8.GetString(whole));
        Assert.Equal(whole.Length, context.Request.ContentLength);
    }

    [Fact]
    public async Task A_read_ahead_shorter_than_the_body_is_not_taken_and_still_replays_in_front_of_the_rest()
    {
        var json = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('x', 200) + "\"}]}";
        var context = Request(json, Encoding.UTF8.GetByteCount(json));
        await CallBody.ReadAsync(context.Request, peekBytes: 64, CancellationToken.None);

        var peeked = Assert.IsType<PeekedRequestBody>(context.Request.Body);
        Assert.False(peeked.TryTakeWhole(context.Request.ContentLength, out _));
        using var reader = new StreamReader(peeked);
        Assert.Equal(json, await reader.ReadToEndAsync());
    }

    [Fact]
    public async Task A_body_without_a_length_is_not_taken_whole()
    {
        const string Json = """{"model":"gpt-4o"}""";
        var context = Request(Json, contentLength: null);
        context.Request.Headers.TransferEncoding = "chunked";
        await CallBody.ReadAsync(context.Request, peekBytes: 4096, CancellationToken.None);

        var peeked = Assert.IsType<PeekedRequestBody>(context.Request.Body);
        Assert.False(peeked.TryTakeWhole(context.Request.ContentLength, out _));
        using var reader = new StreamReader(peeked);
        Assert.Equal(Json, await reader.ReadToEndAsync());
    }
}
