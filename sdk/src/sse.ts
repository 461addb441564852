// A text/event-stream reader over a fetch body, after the WHATWG HTML "event stream interpretation"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

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
  let buffer = ''
  let id: string | undefined
  let retry: number | undefined
  let event = ''
  let data: string[] = []
  try {
    while (true) {
      const { done, value } = await reader.read()
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true })
      let start = 0
      while (true) {
        const end = lineEnd(buffer, start)
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk (or the end).
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === '\r' && !done)) break
        const line = buffer.slice(start, end)
        start = end + (buffer[end] === '\r' && buffer[end + 1] === '\n' ? 2 : 1)
        if (line === '') {
          if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n'), retry }
          event = ''
          data = []
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        let value = colon < 0 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'data') data.push(value)
        else if (field === 'event') event = value
        else if (field === 'id' && !value.includes('\0')) id = value
        else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value)
      }
      buffer = buffer.slice(start)
      // An event not followed by a blank line when the stream ends is discarded (the spec's rule).
      if (done) return
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}

function lineEnd (text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 10 || c === 13) return i
  }
  return -1
}
