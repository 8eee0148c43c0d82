/**
 * The hub URL an agent is given (`--hub-url`) and the two endpoints derived
 * from it. Pure.
 *
 *   https://hub.example.com/bastion → enroll https://hub.example.com/bastion/agent/enroll
 *                                     socket wss://hub.example.com/bastion/agent/ws
 *
 * Accepted: http or https, a host, an optional base path; refused: userinfo
 * (a key never goes in a URL), query, fragment, control characters.
 * Normalised (lower-case scheme and host, default port dropped, no trailing
 * slash), so `agent.json` compares hub URLs reliably.
 */
import { z } from 'zod';

/** A hub URL as the agent stores it (normalised). */
export const hubUrlSchema = z
  .string()
  .max(2048, 'must be at most 2048 characters')
  .transform((value, ctx) => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    if (/[\u0000-\u001f\u007f\s]/.test(value)) return fail('must not contain spaces or control characters');
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return fail('expected an http(s) URL such as https://hub.example.com');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail('must start with http:// or https://');
    if (url.hostname === '') return fail('must name a host');
    if (url.username !== '' || url.password !== '') return fail('must not contain a user name or password');
    if (url.search !== '' || value.includes('?')) return fail('must not have a query string');
    if (url.hash !== '' || value.includes('#')) return fail('must not have a fragment');
    const path = url.pathname.replace(/\/+$/, '');
    return `${url.protocol}//${url.host}${path}`;
  });

/** `POST` here to enroll. */
export function enrollUrl(hubUrl: string): string {
  return `${hubUrl}/agent/enroll`;
}

/** The agent socket URL (ws for http, wss for https). */
export function socketUrl(hubUrl: string): string {
  return `${hubUrl.replace(/^http/, 'ws')}/agent/ws`;
}
