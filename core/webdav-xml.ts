/**
 * A deliberately small XML parser for WebDAV multistatus bodies: elements with
 * namespace resolution, attributes, text, CDATA, comments and processing
 * instructions. Refused on purpose: DOCTYPE (no DTDs, so no entity-expansion
 * bombs and no external entities), undeclared prefixes, mismatched tags, and
 * nesting deeper than {@link MAX_XML_DEPTH}. It is not a general XML parser;
 * it is just enough to read what WebDAV servers send, and strict enough that a
 * hostile body fails loudly instead of being half-understood.
 *
 * Linear in the input: every loop advances the cursor; no regex backtracks
 * over unbounded input.
 */

/** Deepest element nesting accepted; a multistatus needs 6 or 7 levels. */
export const MAX_XML_DEPTH = 64;

/** The XML namespace bound to the `xml` prefix by definition. */
const XML_NS = 'http://www.w3.org/XML/1998/namespace';

/** An element with its namespace URI resolved ('' when none). Text children are strings. */
export interface XmlElement {
  ns: string;
  name: string;
  attrs: Record<string, string>;
  children: Array<XmlElement | string>;
}

/** Thrown for malformed or refused XML; `offset` is the character position. */
export class XmlParseError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.name = 'XmlParseError';
    this.offset = offset;
  }
}

const NAME_RE = /^[A-Za-z_\u00C0-\uFFFF][A-Za-z0-9_.\-\u00B7\u00C0-\uFFFF]*(?::[A-Za-z_\u00C0-\uFFFF][A-Za-z0-9_.\-\u00B7\u00C0-\uFFFF]*)?$/;

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Replace the five predefined entities and character references; anything else is an error. */
export function decodeXmlText(text: string, offset = 0): string {
  if (!text.includes('&')) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const amp = text.indexOf('&', i);
    if (amp < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, amp);
    const semi = text.indexOf(';', amp);
    if (semi < 0 || semi - amp > 12) throw new XmlParseError('unterminated entity reference', offset + amp);
    const ref = text.slice(amp + 1, semi);
    if (ref.startsWith('#')) {
      const cp = /^#x[0-9a-fA-F]{1,6}$/.test(ref) ? parseInt(ref.slice(2), 16) : /^#[0-9]{1,7}$/.test(ref) ? parseInt(ref.slice(1), 10) : NaN;
      if (!(cp > 0 && cp <= 0x10ffff) || (cp >= 0xd800 && cp <= 0xdfff)) throw new XmlParseError('invalid character reference', offset + amp);
      out += String.fromCodePoint(cp);
    } else {
      const e = ENTITIES[ref];
      if (e === undefined) throw new XmlParseError('unknown entity', offset + amp);
      out += e;
    }
    i = semi + 1;
  }
  return out;
}

interface OpenElement {
  prefixedName: string;
  element: XmlElement;
  /** prefix → namespace in scope at this element ('' = default namespace). */
  scope: Map<string, string>;
}

function splitName(qname: string): [string, string] {
  const c = qname.indexOf(':');
  return c < 0 ? ['', qname] : [qname.slice(0, c), qname.slice(c + 1)];
}

/** Parse `source` and return its root element. Throws {@link XmlParseError}. */
export function parseXml(source: string): XmlElement {
  const stack: OpenElement[] = [];
  let root: XmlElement | null = null;
  let i = 0;
  const n = source.length;
  if (source.charCodeAt(0) === 0xfeff) i = 1;

  const appendText = (text: string, at: number) => {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      if (text.trim() !== '') throw new XmlParseError('text outside the root element', at);
      return;
    }
    top.element.children.push(text);
  };

  while (i < n) {
    const lt = source.indexOf('<', i);
    if (lt < 0) {
      appendText(decodeXmlText(source.slice(i), i), i);
      break;
    }
    if (lt > i) appendText(decodeXmlText(source.slice(i, lt), i), i);
    if (source.startsWith('<?', lt)) {
      const end = source.indexOf('?>', lt + 2);
      if (end < 0) throw new XmlParseError('unterminated processing instruction', lt);
      i = end + 2;
    } else if (source.startsWith('<!--', lt)) {
      const end = source.indexOf('-->', lt + 4);
      if (end < 0) throw new XmlParseError('unterminated comment', lt);
      i = end + 3;
    } else if (source.startsWith('<![CDATA[', lt)) {
      const end = source.indexOf(']]>', lt + 9);
      if (end < 0) throw new XmlParseError('unterminated CDATA section', lt);
      appendText(source.slice(lt + 9, end), lt);
      i = end + 3;
    } else if (source.startsWith('<!', lt)) {
      throw new XmlParseError('DOCTYPE and other declarations are not accepted', lt);
    } else if (source.startsWith('</', lt)) {
      const end = source.indexOf('>', lt + 2);
      if (end < 0) throw new XmlParseError('unterminated end tag', lt);
      const qname = source.slice(lt + 2, end).trim();
      const top = stack.pop();
      if (top === undefined || top.prefixedName !== qname) throw new XmlParseError(`unexpected end tag </${qname.slice(0, 40)}>`, lt);
      i = end + 1;
    } else {
      i = parseStartTag(source, lt, stack, (el) => {
        if (root !== null) throw new XmlParseError('more than one root element', lt);
        root = el;
      });
    }
  }
  if (stack.length > 0) throw new XmlParseError(`unclosed element <${stack[stack.length - 1]!.prefixedName.slice(0, 40)}>`, n);
  if (root === null) throw new XmlParseError('no root element', n);
  return root;
}

/** Parse one start tag at `lt`, push or attach the element, return the index after `>`. */
function parseStartTag(source: string, lt: number, stack: OpenElement[], setRoot: (el: XmlElement) => void): number {
  let i = lt + 1;
  const n = source.length;
  const nameStart = i;
  while (i < n && !/[\s/>]/.test(source[i]!)) i++;
  const qname = source.slice(nameStart, i);
  if (!NAME_RE.test(qname)) throw new XmlParseError('invalid element name', lt);
  const rawAttrs: Array<[string, string]> = [];
  let selfClosing = false;
  for (;;) {
    while (i < n && /\s/.test(source[i]!)) i++;
    if (i >= n) throw new XmlParseError('unterminated start tag', lt);
    const c = source[i];
    if (c === '>') {
      i++;
      break;
    }
    if (c === '/') {
      if (source[i + 1] !== '>') throw new XmlParseError('malformed start tag', i);
      selfClosing = true;
      i += 2;
      break;
    }
    const aStart = i;
    while (i < n && !/[\s=/>]/.test(source[i]!)) i++;
    const aname = source.slice(aStart, i);
    if (!NAME_RE.test(aname)) throw new XmlParseError('invalid attribute name', aStart);
    while (i < n && /\s/.test(source[i]!)) i++;
    if (source[i] !== '=') throw new XmlParseError('attribute without value', aStart);
    i++;
    while (i < n && /\s/.test(source[i]!)) i++;
    const q = source[i];
    if (q !== '"' && q !== "'") throw new XmlParseError('attribute value must be quoted', i);
    const vEnd = source.indexOf(q, i + 1);
    if (vEnd < 0) throw new XmlParseError('unterminated attribute value', i);
    const raw = source.slice(i + 1, vEnd);
    if (raw.includes('<')) throw new XmlParseError('"<" in attribute value', i);
    rawAttrs.push([aname, decodeXmlText(raw, i + 1)]);
    i = vEnd + 1;
  }

  const parentScope = stack[stack.length - 1]?.scope;
  const scope = new Map(parentScope ?? [['xml', XML_NS]]);
  const attrs: Record<string, string> = {};
  for (const [aname, value] of rawAttrs) {
    if (Object.hasOwn(attrs, aname)) throw new XmlParseError('duplicate attribute', lt);
    attrs[aname] = value;
    if (aname === 'xmlns') scope.set('', value);
    else if (aname.startsWith('xmlns:')) scope.set(aname.slice(6), value);
  }
  const [prefix, local] = splitName(qname);
  const ns = scope.get(prefix);
  if (ns === undefined) {
    if (prefix !== '') throw new XmlParseError('undeclared namespace prefix', lt);
  }
  const element: XmlElement = { ns: ns ?? '', name: local, attrs, children: [] };
  const parent = stack[stack.length - 1];
  if (parent === undefined) setRoot(element);
  else parent.element.children.push(element);
  if (!selfClosing) {
    if (stack.length >= MAX_XML_DEPTH) throw new XmlParseError(`nesting deeper than ${MAX_XML_DEPTH}`, lt);
    stack.push({ prefixedName: qname, element, scope });
  }
  return i;
}

/** Child elements of `el` with namespace `ns` and local name `name`. */
export function childElements(el: XmlElement, ns: string, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  for (const c of el.children) if (typeof c !== 'string' && c.ns === ns && c.name === name) out.push(c);
  return out;
}

/** The first such child, or undefined. */
export function childElement(el: XmlElement, ns: string, name: string): XmlElement | undefined {
  for (const c of el.children) if (typeof c !== 'string' && c.ns === ns && c.name === name) return c;
  return undefined;
}

/** Concatenated text content of `el` and its descendants. */
export function textContent(el: XmlElement): string {
  let out = '';
  for (const c of el.children) out += typeof c === 'string' ? c : textContent(c);
  return out;
}
