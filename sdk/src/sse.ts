// A text/event-stream reader over a fetch body: eventsource-parser parses the stream (the WHATWG HTML "event
// stream interpretation"); this adds what an EventSource keeps across events, the last event id and the
// reconnection time the server asked for.
import { createParser } from 'eventsource-parser'

export interface ServerSentEvent {
  /** The last event id seen on the stream so far (ids carry over to later events, as the spec says). */
  id: string | undefined
  event: string
  data: string
  /** The reconnection time the server asked for, in ms, when this stream set one. */
  retry: number | undefined
}

/** Yields each dispatched event; cancels the body when the caller stops early. */
export async function * readServerSentEvents (body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  const ready: ServerSentEvent[] = []
  let id: string | undefined
  let retry: number | undefined
  const parser = createParser({
    onEvent (message) {
      if (message.id !== undefined) id = message.id
      ready.push({ id, event: message.event ?? 'message', data: message.data, retry })
    },
    onRetry (ms) { retry = ms }
  })
  try {
    while (true) {
      const { done, value } = await reader.read()
      // An event not followed by a blank line when the stream ends is discarded (the spec's rule).
      if (done) return
      // A UTF-8 character split across chunks waits for its end (stream: true).
      parser.feed(decoder.decode(value, { stream: true }))
      while (ready.length > 0) yield ready.shift()!
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}
