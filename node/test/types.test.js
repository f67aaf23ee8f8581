'use strict';
// index.d.ts never drifts from the JavaScript: every name and member it declares exists at
// run time and the other way round; and the examples type-check with tsc --strict.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { EventEmitter } = require('node:events');
const ts = require('typescript');
const ipcez = require('..');

const DTS = path.join(__dirname, '..', 'index.d.ts');

/** Exported names of index.d.ts, and the members of each exported class. */
function declared() {
  const program = ts.createProgram([DTS], { strict: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(DTS));
  const exports = {};
  for (const sym of checker.getExportsOfModule(module)) {
    const decl = sym.declarations[0];
    if (ts.isInterfaceDeclaration(decl) || ts.isTypeAliasDeclaration(decl)) continue;
    exports[sym.name] = ts.isClassDeclaration(decl)
      ? decl.members.filter((m) => m.name && !ts.isConstructorDeclaration(m) &&
          !(ts.isMethodDeclaration(m) && ['on', 'once'].includes(m.name.getText())))
        .map((m) => (ts.isComputedPropertyName(m.name) ? 'Symbol.asyncIterator' : m.name.getText()))
        .sort()
      : null;
  }
  return exports;
}

/** The same, from the loaded module. */
function actual() {
  const exports = {};
  for (const [name, value] of Object.entries(ipcez)) {
    const isClass = typeof value === 'function' && /^class\b/.test(Function.prototype.toString.call(value));
    if (!isClass) { exports[name] = null; continue; }
    // Members along the prototype chain, up to Node's own classes (EventEmitter, Error).
    const own = (proto) => {
      const keys = [];
      for (let p = proto; p && p !== EventEmitter.prototype && p !== Error.prototype; p = Object.getPrototypeOf(p)) {
        keys.push(...Reflect.ownKeys(p));
      }
      return keys.filter((k) => k !== 'constructor')
        .map((k) => (k === Symbol.asyncIterator ? 'Symbol.asyncIterator' : k));
    };
    // Instance fields set in constructors (errors) count as members too.
    const fields = value.prototype instanceof Error
      ? Object.keys(new value('m', {})).filter((k) => k !== 'name') : [];
    exports[name] = [...new Set([...own(value.prototype), ...fields])].filter((k) => typeof k === 'string').sort();
  }
  return exports;
}

test('index.d.ts declares exactly what the package exports, member for member', () => {
  const d = declared();
  const a = actual();
  assert.deepEqual(Object.keys(d).sort(), Object.keys(a).sort());
  // Error classes declare only their own fields; inherited ones come from SocketError.
  for (const name of ['Socket', 'Listener']) assert.deepEqual(d[name], a[name], name);
  for (const name of Object.keys(a).filter((n) => a[n] && !['Socket', 'Listener'].includes(n))) {
    const base = name === 'SocketError' ? [] : a.SocketError;
    assert.deepEqual(d[name], a[name].filter((m) => !base.includes(m)), name);
  }
});

test('the examples type-check with tsc --strict against index.d.ts', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '--strict', '--noEmit', '-p', path.join(__dirname, 'types')], { stdio: 'inherit' });
});
