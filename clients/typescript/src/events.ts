/** Server-Sent Events (`text/event-stream`) read from a fetch body, by the WHATWG rules: `data` lines join
 * with newlines, a blank line dispatches, lines starting with `:` are comments. */

export interface ServerSentEvent {
  event: string;
  data: string;
  id: string | undefined;
}

export class EventStreamParser {
  private event = "";
  private data: string[] = [];
  private id: string | undefined;

  /** The event this line completes, if any. */
  feed(line: string): ServerSentEvent | undefined {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return undefined;
      }
      const dispatched = { event: this.event || "message", data: this.data.join("\n"), id: this.id };
      this.event = "";
      this.data = [];
      return dispatched;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id") this.id = value;
    return undefined;
  }
}

/** The lines of a byte stream (`\n`, `\r\n` or `\r` ends a line). */
export async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let match: RegExpExecArray | null;
      while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        yield buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
      }
    }
    buffer += decoder.decode();
    if (buffer) yield buffer;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** The events of a stream, in order. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const parser = new EventStreamParser();
  for await (const line of readLines(body)) {
    const event = parser.feed(line);
    if (event) yield event;
  }
}
