using System.Text;
using FuncProxy.Proxying;

namespace FuncProxy.Tests.RateLimiting;

public sealed class UsageScannerTests
{
    private static TokenUsage Scan(UsageScanner scanner, string body, int chunk)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        for (var i = 0; i < bytes.Length; i += chunk)
        {
            scanner.Feed(bytes.AsSpan(i, Math.Min(chunk, bytes.Length - i)));
        }
        return scanner.Usage;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4096)]
    public void Json_usage_is_read_whatever_the_chunking(int chunk)
    {
        const string OpenAi = """{"id":"x","choices":[{"message":{"content":"a \"usage\" word","usage":{"prompt_tokens":999}}}],"usage":{"prompt_tokens":11,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}""";
        Assert.Equal(new TokenUsage(11, 4, CachedInputTokens: 2), Scan(new JsonUsageScanner(), OpenAi, chunk));
        const string Anthropic = """{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}""";
        Assert.Equal(new TokenUsage(15, 3, CachedInputTokens: 5), Scan(new JsonUsageScanner(), Anthropic, chunk));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(4096)]
    public void Sse_usage_is_read_from_openai_chat_openai_responses_and_anthropic_events(int chunk)
    {
        const string Chat = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        Assert.Equal(new TokenUsage(8, 2), Scan(new SseUsageScanner(), Chat, chunk));

        const string Responses = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":6}}}\n\n";
        Assert.Equal(new TokenUsage(20, 6), Scan(new SseUsageScanner(), Responses, chunk));

        const string Anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n";
        Assert.Equal(new TokenUsage(12, 5), Scan(new SseUsageScanner(), Anthropic, chunk));
    }

    [Fact]
    public void A_stream_without_usage_reports_none()
    {
        Assert.False(Scan(new SseUsageScanner(), "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", 3).IsKnown);
    }
}
