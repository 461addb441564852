// Handler types derived from the generated schema: params, query, body, headers and the allowed
// success status/body pairs of an operation all come from `operations[Id]`.
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { operations } from './schema.js'
import type { operationTags } from './operations.js'

export type OperationId = keyof operations & keyof typeof operationTags
export type Tag = (typeof operationTags)[OperationId]
export type OperationsOf<T extends Tag> = { [K in OperationId]: (typeof operationTags)[K] extends T ? K : never }[OperationId]

type Op<K extends OperationId> = operations[K]
type Part<P, Key extends string> = Key extends keyof P ? ([NonNullable<P[Key]>] extends [never] ? unknown : NonNullable<P[Key]>) : unknown

/** Non-JSON request bodies as Fastify hands them over: text as a string, gzip as a Buffer. */
type RawBody<C> = ('text/plain' extends keyof C ? string : never) | ('application/gzip' extends keyof C ? Buffer : never)

type BodyOf<K extends OperationId> = Op<K> extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : Op<K> extends { requestBody?: { content: { 'application/json': infer B } } } ? B | undefined
    : Op<K> extends { requestBody: { content: infer C } } ? RawBody<C> : unknown

/** The body type a response declares (JSON, text, or nothing). */
type ContentOf<R> = R extends { content: infer C }
  ? C extends { 'application/json': infer B } ? B | ('text/csv' extends keyof C ? string : never)
    : C extends { 'text/plain': infer T } ? T
      : C extends { 'text/html': infer T } ? T
        : C extends { 'text/event-stream': unknown } ? Readable
          : C extends { 'application/gzip': unknown } ? Buffer | Readable
            : C extends { 'application/problem+json': infer P } ? P : never
  : undefined

type SuccessStatus = 200 | 201 | 202 | 204
type Responses<K extends OperationId> = Op<K>['responses']
type Successes<K extends OperationId> = Extract<keyof Responses<K>, SuccessStatus>

/** Status code → body map of the success responses, used by FastifyReply to type `reply.code(n).send(body)`. */
export type ReplyMap<K extends OperationId> = { [S in Successes<K>]: ContentOf<Responses<K>[S]> }
export type ReplyBody<K extends OperationId> = ReplyMap<K>[Successes<K>]

export interface RouteOf<K extends OperationId> {
  Params: Part<Op<K>['parameters'], 'path'>
  Querystring: Part<Op<K>['parameters'], 'query'>
  Headers: Part<Op<K>['parameters'], 'header'>
  Body: BodyOf<K>
  Reply: ReplyMap<K>
}

export type Handler<K extends OperationId> = (
  this: FastifyInstance,
  request: FastifyRequest<RouteOf<K>>,
  reply: FastifyReply<RouteOf<K>>
) => Promise<ReplyBody<K>>

export type Handlers<T extends Tag> = { [K in OperationsOf<T>]: Handler<K> }
