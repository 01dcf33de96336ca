/**
 * Reading a secret for the CLI. At a terminal the input is read by readline with its echo muted (readline puts the
 * terminal in raw mode and draws the line itself, so muting what it draws hides the characters; the prompt goes to
 * stderr so stdout stays clean for what a command prints). From a pipe, the first line of stdin.
 */
import { createInterface } from "node:readline";
import { Writable } from "node:stream";

export async function readSecret(prompt: string, io: { input?: NodeJS.ReadStream; output?: NodeJS.WriteStream } = {}): Promise<string> {
  const input = io.input ?? process.stdin;
  const output = io.output ?? process.stderr;
  if (!input.isTTY) {
    const rl = createInterface({ input, terminal: false });
    try {
      for await (const line of rl) return line;
      return "";
    } finally {
      rl.close();
    }
  }
  output.write(prompt);
  const muted = new Writable({ write: (_chunk, _enc, done) => done() });
  const rl = createInterface({ input, output: muted, terminal: true });
  try {
    return await new Promise<string>((resolve, reject) => {
      let answered = false;
      rl.question("", (answer) => {
        answered = true;
        resolve(answer);
      });
      // Ctrl-D: no password; Ctrl-C: stop, as at any other prompt
      rl.on("close", () => {
        if (!answered) resolve("");
      });
      rl.on("SIGINT", () => {
        rl.close();
        reject(new PromptInterrupted());
      });
    });
  } finally {
    rl.close();
    output.write("\n");
  }
}

export class PromptInterrupted extends Error {
  override readonly name = "PromptInterrupted";
  constructor() {
    super("interrupted");
  }
}
