/** The time source services use, injectable so tests can move time (expiry, signed URLs). */
export type Clock = () => Date;

export const systemClock: Clock = () => new Date();
