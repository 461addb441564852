/**
 * Calls made at about the same time, run together (group commit). A call joins the waiting ones; a batch of
 * up to `maxSize` leaves whenever fewer than `maxInFlight` are running. Alone, a call leaves at once (a batch
 * of one, no added wait); under load, the calls that arrive while batches run leave together with the next
 * free slot: one round trip and one commit for many. `run` answers each input, in order; when it throws,
 * every call of that batch gets the error.
 */
export class Batcher<I, O> {
  readonly #run: (inputs: I[]) => Promise<O[]>
  readonly #maxSize: number
  readonly #maxInFlight: number
  readonly #onBatch: ((size: number) => void) | undefined
  #waiting: Array<{ input: I, resolve: (output: O) => void, reject: (err: unknown) => void }> = []
  #inFlight = 0

  constructor (run: (inputs: I[]) => Promise<O[]>, options: { maxSize: number, maxInFlight: number, onBatch?: (size: number) => void }) {
    this.#run = run
    this.#maxSize = options.maxSize
    this.#maxInFlight = options.maxInFlight
    this.#onBatch = options.onBatch
  }

  submit (input: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject })
      this.#pump()
    })
  }

  #pump (): void {
    while (this.#inFlight < this.#maxInFlight && this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, this.#maxSize)
      this.#inFlight++
      this.#onBatch?.(batch.length)
      let running: Promise<O[]>
      try {
        running = this.#run(batch.map((call) => call.input))
      } catch (err) {
        running = Promise.reject(err)
      }
      // The next batch leaves before this one's callers go on with their answers, so the store works on it
      // while they do (freeing the slot after them would leave it idle meanwhile).
      running.then(
        (outputs) => {
          this.#done()
          batch.forEach((call, i) => { call.resolve(outputs[i]!) })
        },
        (err: unknown) => {
          this.#done()
          batch.forEach((call) => { call.reject(err) })
        })
    }
  }

  #done (): void {
    this.#inFlight--
    this.#pump()
  }
}
