// URL helpers both sides need for what they print (pure code: the driver and the emulator may import it).

/** `url` without user and password, for messages, logs and Events; text that is no URL comes back as it is. */
export function urlWithoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}
