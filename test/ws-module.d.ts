/**
 * The parts of the `ws` package the tests use (the package ships no types
 * and @types/ws is not installed): a WebSocket client that can send
 * handshake headers, which the browser API cannot.
 */
declare module 'ws' {
  import type { ClientRequest, IncomingMessage } from 'node:http';
  export default class WebSocket {
    constructor(url: string, protocols?: string | string[], options?: { headers?: Record<string, string> });
    on(event: 'unexpected-response', listener: (req: ClientRequest, res: IncomingMessage) => void): this;
    on(event: 'open', listener: () => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
    close(code?: number, reason?: string): void;
    send(data: string): void;
  }
}
